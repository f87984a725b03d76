"""The module tree as a Qt item model: modules, then their tensors, buffers and hooks, built lazily.

Each row is a :class:`~sparsegui.gui.tree_nodes.Node`. A module's children are made the first time a view asks for
them (``rowCount``), so a model with 10,000 modules opens with one row per top-level module. Counts come from
``session.stats`` (each tensor counted once, again only after an operation touched it); a row caches its cells until
the next ``model_changed``. A pruned tensor ``weight`` shows its raw parameter ``weight_orig`` and its buffer
``weight_mask`` as children. On ``model_changed`` the built rows of the touched modules (``session.changed``; all of
them when unknown) are compared by key with the model and only the rows that appeared or went are removed/inserted,
so expansion and selection survive pruning and undo.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal

from sparsegui.core.inspection import HookInfo, module_hooks
from sparsegui.core.targets import module_type_name
from sparsegui.gui.session import Selection, Session
from sparsegui.gui.sparsity_delegate import SPARSITY_ROLE, kind_icon
from sparsegui.gui.tree_nodes import Node, adopt, has_children, make_children
from sparsegui.gui.tree_text import hook_text, module_devices, percent_text, qualify, shape_text

__all__ = ["COLUMNS", "KIND_ROLE", "ModuleTreeModel", "Node", "qualify"]

COLUMNS = ("Name", "Type", "Shape / params", "Sparsity", "Device")
NAME, TYPE, SIZE, SPARSITY, DEVICE = range(len(COLUMNS))
KIND_ROLE = Qt.ItemDataRole.UserRole + 2  # the node's kind: module, tensor, parameter, buffer, hook
AnyIndex = QModelIndex | QPersistentModelIndex


class ModuleTreeModel(QAbstractItemModel):
    """``session.document.model`` as a tree; see the module docstring for the rows and their order.

    ``refresh_started``/``refresh_finished`` bracket an in-place update after ``model_changed``, during which rows
    may be removed and inserted (views use them to hold the session's selection steady).
    """

    refresh_started = Signal()
    refresh_finished = Signal()

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.created_nodes = 0  # how many rows were ever built (tests check laziness with it)
        self._devices: dict[int, frozenset[str]] = {}
        self._retired: list[Node] = []  # removed rows stay alive until the next reset: views may hold their indexes
        self._root = self._invisible_root()
        session.document_replaced.connect(self.reset)
        session.model_changed.connect(self.refresh)

    # -- building ---------------------------------------------------------------------------------------------------
    def _node(self, *args: Any, **kwargs: Any) -> Node:
        self.created_nodes += 1
        return Node(*args, **kwargs)

    def _invisible_root(self) -> Node:
        model = self.session.document.model
        return Node("root", "", "", model, ("root",))

    def _make_children(self, node: Node) -> list[Node]:
        return make_children(node, self._node)

    def _children(self, node: Node) -> list[Node]:
        if node.children is None:
            node.children = adopt(node, self._make_children(node))
        return node.children

    def _node_of(self, index: AnyIndex) -> Node:
        return index.internalPointer() if index.isValid() else self._root

    def _index_of(self, node: Node, column: int = 0) -> QModelIndex:
        return QModelIndex() if node is self._root else self.createIndex(node.row, column, node)

    # -- QAbstractItemModel -----------------------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: AnyIndex = QModelIndex()) -> QModelIndex:  # noqa: B008
        if not 0 <= column < len(COLUMNS) or row < 0 or (parent.isValid() and parent.column() != 0):
            return QModelIndex()
        children = self._children(self._node_of(parent))
        return self.createIndex(row, column, children[row]) if row < len(children) else QModelIndex()

    def parent(self, index: AnyIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid():
            return QModelIndex()
        parent = index.internalPointer().parent
        return QModelIndex() if parent is None or parent is self._root else self._index_of(parent)

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self._children(self._node_of(parent)))

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def hasChildren(self, parent: AnyIndex = QModelIndex()) -> bool:  # noqa: B008
        if parent.isValid() and parent.column() != 0:
            return False
        return has_children(self._node_of(parent))

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < 5:
            return COLUMNS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node: Node = index.internalPointer()
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(node, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(node)
        if role == Qt.ItemDataRole.DecorationRole and column == NAME:
            return kind_icon(self._icon_kind(node))
        if role == SPARSITY_ROLE and column == SPARSITY:
            return self._stats(node)[2]
        if role == KIND_ROLE:
            return node.kind
        if role == Qt.ItemDataRole.TextAlignmentRole and column == SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # -- cells ------------------------------------------------------------------------------------------------------
    def _icon_kind(self, node: Node) -> str:
        if node.kind == "tensor" and node.pruned:
            return "pruned"
        if node.key == ("mask",):
            return "mask"
        return node.kind

    def _hook(self, node: Node) -> HookInfo | None:
        hooks = module_hooks(node.module)
        return hooks[node.index] if node.index < len(hooks) else None

    def _stats(self, node: Node) -> tuple[int, int, float | None, str]:
        """(elements, zeros, sparsity or None, device) of a row, cached until the model changes."""
        found = node.cache.get("stats")
        if found is not None:
            return found
        stats = self.session.stats
        if node.kind == "module":
            count = stats.module(node.name, node.module)
            devices = module_devices(node.module, self._devices)
            found = (count.numel, count.zeros, count.sparsity, ", ".join(sorted(devices)))
        elif node.kind == "hook":
            found = (0, 0, None, "")
        else:
            tensor = node.tensor()
            count = stats.tensor(node.module_path, node.local, node.module)
            numel, zeros = count.numel, count.zeros
            show = node.kind in ("tensor", "parameter") or node.key == ("mask",)
            found = (numel, zeros, zeros / numel if numel and show else None, str(tensor.device))
        node.cache["stats"] = found
        return found

    def _text(self, node: Node, column: int) -> str:
        if column == NAME:
            if node.kind == "hook":
                hook = self._hook(node)
                return hook_text(hook) if hook else ""
            return node.local
        if column == TYPE:
            return self._type_text(node)
        if column == SIZE:
            if node.kind == "module":
                numel = self._stats(node)[0]
                return f"{numel:,} params" if numel else ""
            return "" if node.kind == "hook" else shape_text(node.tensor().shape)
        if column == SPARSITY:
            sparsity = self._stats(node)[2]
            return "" if sparsity is None else percent_text(sparsity)
        return self._stats(node)[3]

    def _type_text(self, node: Node) -> str:
        if node.kind == "module":
            return module_type_name(node.module)
        if node.kind == "tensor":
            return "tensor, pruned" if node.pruned else "tensor"
        if node.kind == "parameter":
            return "parameter (raw)" if node.key == ("orig",) else "parameter"
        if node.kind == "buffer":
            if node.key == ("mask",):
                return "buffer (mask)"
            return "buffer" if node.local not in node.module._non_persistent_buffers_set else "buffer, non-persistent"
        return "hook"

    def _tooltip(self, node: Node) -> str:
        if node.kind == "hook":
            hook = self._hook(node)
            return hook_text(hook) if hook else ""
        if node.kind == "module":
            return f"{node.name or '(root)'} — {module_type_name(node.module)}"
        tensor = node.tensor()
        extra = ""
        if node.kind == "tensor" and node.pruned:
            extra = f"\nforward uses {node.local}_orig × {node.local}_mask"
        return f"{node.name}: {shape_text(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}{extra}"

    # -- selections -------------------------------------------------------------------------------------------------
    def selection_for(self, index: AnyIndex) -> Selection:
        """The :class:`Selection` a row stands for (any column of it)."""
        return self._node_of(index).selection

    def node_for(self, index: AnyIndex) -> Node:
        return self._node_of(index)

    def module_index(self, path: str) -> QModelIndex:
        """The row of the module at ``path`` ("" is the root), building the rows on the way; invalid if none."""
        node = self._children(self._root)[0]
        for part in path.split(".") if path else []:
            node = next((c for c in self._children(node) if c.kind == "module" and c.local == part), None)
            if node is None:
                return QModelIndex()
        return self._index_of(node)

    def index_for(self, selection: Selection, column: int = 0) -> QModelIndex:
        """The row showing ``selection``, building rows as needed; an invalid index if the model has no such item."""
        module_index = self.module_index(selection.module_name)
        if selection.kind == "module" or not module_index.isValid():
            return module_index if column == 0 or not module_index.isValid() else module_index.siblingAtColumn(column)
        pending = list(self._children(module_index.internalPointer()))
        while pending:
            node = pending.pop(0)
            if node.selection == selection:
                return self._index_of(node, column)
            if node.kind == "tensor" and node.pruned:
                pending.extend(self._children(node))
        return QModelIndex()

    # -- keeping up with the document -------------------------------------------------------------------------------
    def reset(self, *_: object) -> None:
        """A new document: rebuild from scratch."""
        self.beginResetModel()
        self._devices.clear()
        self._retired.clear()
        self._root = self._invisible_root()
        self.endResetModel()

    def refresh(self) -> None:
        """The same model changed: update built rows in place (insert/remove only what appeared or went), looking
        again only at the modules the change touched (``session.changed``); the other rows just forget their
        cached cells, whose statistics ``session.stats`` still holds."""
        self.refresh_started.emit()
        try:
            self._devices.clear()
            touched = self.session.changed
            self._refresh(self._root, None if touched is None else {q.rpartition(".")[0] for q in touched})
            # one layout change re-reads every visible cell; a dataChanged per built level would cost one Python
            # emit each, and each emit from Python is slow (and, on PySide6 6.12 with CPython < 3.12, leaks a
            # reference to True)
            self.layoutAboutToBeChanged.emit()
            self.layoutChanged.emit()
        finally:
            self.refresh_finished.emit()

    def _refresh(self, node: Node, paths: set[str] | None) -> None:
        """Update ``node``'s built rows; ``paths`` are the touched modules (None: all of them)."""
        node.cache.clear()
        if node.children is None:
            return
        if paths is None or (node.kind != "root" and node.module_path in paths):
            fresh = self._make_children(node)
            if [c.key for c in fresh] != [c.key for c in node.children]:
                self._merge(node, fresh)
            now = {c.key: c for c in fresh}
            for child in node.children:
                child.pruned = now[child.key].pruned  # a tensor keeps its row when pruned; orig and mask go below
        for child in node.children:
            self._refresh(child, paths)

    def _merge(self, node: Node, fresh: list[Node]) -> None:
        """Turn ``node.children`` into ``fresh`` by keys, keeping the old rows (and their subtrees) that remain."""
        old = node.children
        assert old is not None
        parent = self._index_of(node)
        position = {c.key: i for i, c in enumerate(fresh)}
        kept, last = set(), -1
        for child in old:
            at = position.get(child.key)
            if at is not None and at > last:
                kept.add(child.key)
                last = at
        end = len(old) - 1
        while end >= 0:  # remove runs of rows that went, bottom up
            if old[end].key in kept:
                end -= 1
                continue
            start = end
            while start > 0 and old[start - 1].key not in kept:
                start -= 1
            self.beginRemoveRows(parent, start, end)
            self._retired.extend(old[start : end + 1])
            del old[start : end + 1]
            adopt(node, old)
            self.endRemoveRows()
            end = start - 1
        row = 0
        while row < len(fresh):  # insert runs of rows that appeared, top down
            if row < len(old) and old[row].key == fresh[row].key:
                row += 1
                continue
            stop = row
            while stop < len(fresh) and fresh[stop].key not in kept:
                stop += 1
            self.beginInsertRows(parent, row, stop - 1)
            old[row:row] = fresh[row:stop]
            adopt(node, old)
            self.endInsertRows()
            row = stop


if __name__ == "__main__":
    import sys

    from PySide6.QtWidgets import QApplication, QTreeView

    from sparsegui.gui.sparsity_delegate import SparsityDelegate

    app = QApplication(sys.argv)
    session = Session()
    session.document.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    tree_model = ModuleTreeModel(session)
    view = QTreeView()
    view.setModel(tree_model)
    view.setItemDelegateForColumn(SPARSITY, SparsityDelegate(view))
    view.expandAll()
    view.resize(900, 500)
    view.show()
    sys.exit(app.exec())
