"""The module tree as a Qt item model: modules, then their tensors, buffers and hooks, built lazily.

Each row is a :class:`~sparsegui.gui.tree_nodes.Node` over a core :class:`~sparsegui.core.rows.Row` read from the
session's state (never from live modules). A module's children are made the first time a view asks for them
(``rowCount``), so a model with 10,000 modules opens with one row per top-level module. Counts come from
``session.totals`` ("…" until the background count reaches a tensor); a row caches its cells until the next change.
A pruned tensor ``weight`` shows its raw parameter ``weight_orig`` and its buffer ``weight_mask`` as children. On
``model_changed`` the built rows of the touched modules are compared by key with the new state and only the rows
that appeared or went are removed/inserted, so expansion and selection survive pruning and undo.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal

from sparsegui.core.rows import row_count, row_norm_removed
from sparsegui.gui.session import Selection, Session
from sparsegui.gui.sparsity_delegate import SPARSITY_ROLE, kind_icon
from sparsegui.gui.tree_nodes import ROOT, Node, adopt, has_children, make_children
from sparsegui.gui.tree_text import count_text, hook_text, percent_text, shape_text

__all__ = ["COLUMNS", "KIND_ROLE", "ModuleTreeModel", "Node"]

COLUMNS = ("Name", "Type", "Shape / params", "Sparsity", "Norm removed", "Device")
NAME, TYPE, SIZE, SPARSITY, NORM, DEVICE = range(len(COLUMNS))
KIND_ROLE = Qt.ItemDataRole.UserRole + 2  # the node's kind: module, tensor, parameter, buffer, hook
AnyIndex = QModelIndex | QPersistentModelIndex
UNKNOWN = "…"


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
        self._retired: list[Node] = []  # removed rows stay alive until the next reset: views may hold their indexes
        self._root = Node(ROOT)
        session.document_replaced.connect(self.reset)
        session.model_changed.connect(self.refresh)
        session.counts_changed.connect(self.recount)

    # -- building ---------------------------------------------------------------------------------------------------
    def _make_children(self, node: Node) -> list[Node]:
        children = make_children(node, self.session.document.structure, self.session.state)
        self.created_nodes += len(children)
        return children

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
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole and section == NORM:
            return ("‖W ⊙ (1 − M)‖ / ‖W‖: how much of the weights' norm (as loaded) the zeros took; "
                    "a module's is over all its tensors")
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
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (SIZE, NORM):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # -- cells ------------------------------------------------------------------------------------------------------
    def _icon_kind(self, node: Node) -> str:
        if node.kind == "tensor" and node.pruned:
            return "pruned"
        if node.key == ("mask",):
            return "mask"
        return node.kind

    def _stats(self, node: Node) -> tuple[int, int | None, float | None]:
        """(elements, zeros, sparsity) of a row — zeros None while not counted — cached until the state changes."""
        found = node.cache.get("stats")
        if found is None:
            count = row_count(node.data, self.session.totals)
            found = (0, None, None) if count is None else (count.numel, count.zeros, count.sparsity)
            node.cache["stats"] = found
        return found

    def _text(self, node: Node, column: int) -> str:
        data = node.data
        if column == NAME:
            if node.kind == "hook":
                return hook_text(data.hook) if data.hook is not None else ""
            return node.local
        if column == TYPE:
            return data.type_text
        if column == SIZE:
            if node.kind == "module":
                numel = self._stats(node)[0]
                return f"{count_text(numel)} params" if numel else ""
            return "" if data.shape is None else shape_text(data.shape)
        if column == SPARSITY:
            numel, zeros, sparsity = self._stats(node)
            if zeros is None and numel:
                return UNKNOWN
            return "" if sparsity is None else percent_text(sparsity)
        if column == NORM:
            return self._norm_text(node)
        return "" if node.kind == "hook" else str(self.session.document.device)

    def _norm_text(self, node: Node) -> str:
        """‖W ⊙ (1 − M)‖ / ‖W‖ of a module or forward tensor (… while not measured), cached until the state
        changes."""
        if node.kind not in ("module", "tensor"):
            return ""
        found = node.cache.get("norm")
        if found is None:
            value = row_norm_removed(node.data, self.session.totals)
            found = UNKNOWN if value is None else "n/a" if value != value else percent_text(value)
            if value is not None:
                node.cache["norm"] = found
        return found

    def _tooltip(self, node: Node) -> str:
        data = node.data
        if node.kind == "hook":
            return hook_text(data.hook) if data.hook is not None else ""
        if node.kind == "module":
            return f"{node.name or '(root)'} — {data.type_text}, {self._stats(node)[0]:,} parameters"
        extra = ""
        if node.kind == "tensor" and node.pruned:
            extra = f"\nforward uses {node.local}_orig × {node.local}_mask"
        if data.alias_of is not None:
            extra += f"\nthe same tensor as {data.alias_of} (tied): pruned and counted once, under that name"
        if self._stats(node)[1] is None and node.kind != "hook":
            extra += "\nzeros: still being counted"
        shape = "" if data.shape is None else shape_text(data.shape)
        return f"{node.name}: {shape} {data.dtype}{extra}"

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
        self._retired.clear()
        self._root = Node(ROOT)
        self.endResetModel()

    def refresh(self) -> None:
        """The state changed: update built rows in place (insert/remove only what appeared or went), looking again
        only at the modules holding a changed tensor (``session.changed``); the other rows only forget their cached
        cells."""
        self.refresh_started.emit()
        try:
            touched = self.session.changed
            paths = None
            if touched is not None:
                structure = self.session.document.structure
                paths = {structure.tensors[n].module for n in touched}
                paths |= {a.rpartition(".")[0] for n in touched for a in structure.tensors[n].aliases}
            self._refresh(self._root, paths)
            self._relayout()
        finally:
            self.refresh_finished.emit()

    def recount(self) -> None:
        """Counts arrived from the background: only the cells change."""
        self._forget(self._root)
        self._relayout()

    def _relayout(self) -> None:
        # one layout change re-reads every visible cell; a dataChanged per built level would cost one Python emit
        # each, and each emit from Python is slow (and, on PySide6 6.12 with CPython < 3.12, leaks a reference to
        # True)
        self.layoutAboutToBeChanged.emit()
        self.layoutChanged.emit()

    def _forget(self, node: Node) -> None:
        node.cache.clear()
        for child in node.children or ():
            self._forget(child)

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
                child.data = now[child.key].data  # a tensor keeps its row when pruned; orig and mask go below
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
