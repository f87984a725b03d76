"""The module tree panel: a filter box above a tree of modules, tensors, buffers and hooks, synced with the session.

Selecting rows selects them in the session; a selection made elsewhere (a chart click) selects, expands to and
scrolls to its row. The context menu only asks: the main window connects ``prune_requested`` and friends.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLineEdit, QMenu, QTreeView, QVBoxLayout, QWidget

from sparsegui.core.names import qualify
from sparsegui.core.structure import ModelStructure
from sparsegui.core.targets import GLOB_CHARS, named_tensors
from sparsegui.gui.session import Selection, Session
from sparsegui.gui.sparsity_delegate import SparsityDelegate
from sparsegui.gui.tree_model import COLUMNS, KIND_ROLE, NAME, SPARSITY, ModuleTreeModel, Node

COLUMN_WIDTHS = (175, 105, 88, 98, 84, 50)  # all six fit the default 600 px dock


def matching_modules(structure: ModelStructure, text: str) -> set[str]:
    """Names of the modules whose qualified name or type (class, base classes, guessed kind) contains ``text``,
    ignoring case; with ``*``, ``?`` or ``[`` the text is a glob pattern matched against the whole name or type."""
    pattern = text.strip().lower()
    glob = bool(GLOB_CHARS & set(pattern))
    found = set()
    for name, slot in structure.modules.items():
        words = [name.lower(), *(t.lower() for t in slot.types)]
        if any(fnmatchcase(w, pattern) if glob else pattern in w for w in words):
            found.add(name)
    return found


def _prefixes(path: str) -> list[str]:
    """``"a.b.c"`` → ``["", "a", "a.b", "a.b.c"]``."""
    parts = path.split(".") if path else []
    return ["", *(".".join(parts[: i + 1]) for i in range(len(parts)))]


class ModuleFilterProxy(QSortFilterProxyModel):
    """Shows the matching modules with everything inside them, and their ancestors (without their tensors)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.matches: set[str] | None = None
        self.ancestors: set[str] = set()

    def set_matches(self, matches: set[str] | None) -> None:
        self.beginFilterChange()
        self.matches = matches
        self.ancestors = {p for m in matches or () for p in _prefixes(m)[:-1]}
        self.endFilterChange()

    def hasChildren(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:  # noqa: B008
        # exact without mapping the children (which would build them): a shown module is a match, an ancestor of
        # one (which shows the way down) or inside a match (which shows everything)
        return self.sourceModel().hasChildren(self.mapToSource(parent))

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if self.matches is None:
            return True
        model = self.sourceModel()
        assert isinstance(model, ModuleTreeModel)
        node = model.node_for(model.index(source_row, 0, source_parent))
        path = node.module_path
        if node.kind == "module" and path in self.ancestors:
            return True
        return any(p in self.matches for p in _prefixes(path))


class ModuleTreeWidget(QWidget):
    """Filter box + tree; emits requests for the main window, never changes the model itself."""

    prune_requested = Signal(list)  # tensor names ("conv1.weight", …) the selection covers
    remove_requested = Signal(list)  # pruned tensor names the selection covers
    undo_requested = Signal()
    show_mask_requested = Signal(str)  # the pruned tensor of the current row

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("moduleTreePanel")
        self.session = session
        self.model = ModuleTreeModel(session, self)
        self.proxy = ModuleFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.filter_edit = QLineEdit(objectName="moduleFilter", placeholderText="Filter modules by name or type…")
        self.filter_edit.setClearButtonEnabled(True)
        self.view = QTreeView(objectName="moduleTree")
        self.view.setModel(self.proxy)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setItemDelegateForColumn(SPARSITY, SparsityDelegate(self.view))
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header = self.view.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column, width in enumerate(COLUMN_WIDTHS[: len(COLUMNS)]):
            header.resizeSection(column, width)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.view)

        self.prune_action = QAction("Prune…", self, objectName="pruneAction")
        self.remove_action = QAction("Remove pruning", self, objectName="removeAction")
        self.undo_action = QAction("Undo", self, objectName="undoAction")
        self.show_mask_action = QAction("Show mask", self, objectName="showMaskAction")
        self.prune_action.triggered.connect(lambda: self.prune_requested.emit(self.selected_tensors()))
        self.remove_action.triggered.connect(lambda: self.remove_requested.emit(self.selected_tensors(pruned=True)))
        self.undo_action.triggered.connect(self.undo_requested)
        self.show_mask_action.triggered.connect(self._emit_show_mask)

        self._syncing = False
        self._scroll = (0, 0)
        self._filter_timer = QTimer(self, singleShot=True, interval=200)
        self._filter_timer.timeout.connect(self.apply_filter)
        self.filter_edit.textChanged.connect(self._filter_timer.start)
        self.view.selectionModel().selectionChanged.connect(self._on_view_selection)
        self.view.customContextMenuRequested.connect(self._show_menu)
        self.model.modelReset.connect(self._on_model_reset)
        self.view.expanded.connect(self._span_hooks)
        self.proxy.rowsInserted.connect(lambda parent, _first, _last: self._span_hooks(parent))
        self.model.refresh_started.connect(self._on_refresh_started)
        self.model.refresh_finished.connect(self._on_refresh_finished)
        session.selection_changed.connect(self._on_session_selection)
        session.busy_changed.connect(self.update_actions)
        session.model_changed.connect(self.update_actions)
        self._on_model_reset()

    # -- filtering --------------------------------------------------------------------------------------------------
    def apply_filter(self) -> None:
        """Filter now with the box's text (typing waits 200 ms first); matches are revealed."""
        self._filter_timer.stop()
        text = self.filter_edit.text().strip()
        matches = matching_modules(self.session.document.structure, text) if text else None
        self.proxy.set_matches(matches)
        if matches:
            self.view.setUpdatesEnabled(False)
            for path in sorted(self.proxy.ancestors, key=len)[:2000]:
                self.view.expand(self.proxy.mapFromSource(self.model.module_index(path)))
            self.view.setUpdatesEnabled(True)

    # -- selection --------------------------------------------------------------------------------------------------
    def _source_rows(self) -> list[QModelIndex]:
        selection_model = self.view.selectionModel()
        rows = [self.proxy.mapToSource(i) for i in selection_model.selectedRows(NAME)]
        current = self.proxy.mapToSource(selection_model.currentIndex().siblingAtColumn(NAME))
        rows.sort(key=lambda i: i != current)  # the current row first
        return rows

    def selected_nodes(self) -> list[Node]:
        return [self.model.node_for(i) for i in self._source_rows()]

    def _on_view_selection(self, *_: object) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            self.session.select([self.model.selection_for(i) for i in self._source_rows()])
        finally:
            self._syncing = False
        self.update_actions()

    def _on_session_selection(self, items: list[Selection]) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            self.select_items(items)
        finally:
            self._syncing = False
        self.update_actions()

    def select_items(self, items: list[Selection], scroll: bool = True) -> None:
        """Select the rows of ``items`` (skipping any the filter hides), expand to them and (``scroll``) scroll to the
        first."""
        rows = [self.proxy.mapFromSource(self.model.index_for(item)) for item in items]
        rows = [r for r in rows if r.isValid()]
        selection = QItemSelection()
        for row in rows:
            selection.select(row, row.siblingAtColumn(len(COLUMNS) - 1))
            parent = row.parent()
            while parent.isValid():
                self.view.expand(parent)
                parent = parent.parent()
        flags = QItemSelectionModel.SelectionFlag
        selection_model = self.view.selectionModel()
        selection_model.select(selection, flags.ClearAndSelect | flags.Rows)
        if rows:
            selection_model.setCurrentIndex(rows[0], flags.NoUpdate)
            if scroll:
                self.view.scrollTo(rows[0])

    def _span_hooks(self, parent: QModelIndex) -> None:
        """Hook rows span all columns: their decoded text is long and they have no shape or sparsity."""
        for row in range(self.proxy.rowCount(parent)):
            if self.proxy.index(row, 0, parent).data(KIND_ROLE) == "hook":
                self.view.setFirstColumnSpanned(row, parent, True)

    def _on_refresh_started(self) -> None:
        self._syncing = True  # rows may go and come back: the view's selection changes are not the user's
        self._scroll = (self.view.verticalScrollBar().value(), self.view.horizontalScrollBar().value())

    def _on_refresh_finished(self) -> None:
        items = self.session.selection
        present = [i for i in items if self.model.index_for(i).isValid()]
        self.select_items(present, scroll=False)
        if self._scroll != (0, 0):  # at the top there is nothing to restore (and no layout to force now)
            self.view.executeDelayedItemsLayout()  # the scroll range first, else the value is clamped to a stale one
            self.view.verticalScrollBar().setValue(self._scroll[0])  # the user's place in the tree stays
            self.view.horizontalScrollBar().setValue(self._scroll[1])
        self._syncing = False
        if present != items:
            self.session.select(present)  # an undo took away a selected mask or hook

    def _on_model_reset(self) -> None:
        self.view.expand(self.proxy.index(0, 0))
        if self.filter_edit.text().strip():
            self.apply_filter()

    # -- requests ---------------------------------------------------------------------------------------------------
    def selected_tensors(self, pruned: bool = False) -> list[str]:
        """The tensors the selected rows cover: a tensor (or its ``_orig``/``_mask``, or its pruning hook) itself,
        a module every tensor in its subtree; with ``pruned`` only the pruned ones."""
        state, structure = self.session.state, self.session.document.structure
        every = named_tensors(structure, state)
        names: dict[str, None] = {}
        for node in self.selected_nodes():
            if node.kind == "module":
                prefix = f"{node.name}." if node.name else ""
                covered = [(n, c) for n, c in every if n.startswith(prefix)]
            elif node.kind == "hook":
                tensor = node.data.hook.tensor if node.data.hook is not None else None
                name = qualify(node.name, tensor) if tensor else None
                covered = [(n, c) for n, c in every if n == name]
            else:
                covered = [(node.name, node.data.tensor)] if node.data.tensor is not None else []
                covered = [(n.removesuffix("_orig").removesuffix("_mask") if node.kind != "tensor" else n, c)
                           for n, c in covered]
            for name, canonical in covered:
                if canonical is not None and (not pruned or state.tensors[canonical].pruned):
                    names[name] = None
        return list(names)

    def _emit_show_mask(self) -> None:
        shown = self.selected_tensors(pruned=True)
        if shown:
            self.show_mask_requested.emit(shown[0])

    def update_actions(self, *_: object) -> None:
        busy = self.session.busy
        pruned = bool(self.selected_tensors(pruned=True))
        self.prune_action.setEnabled(not busy and bool(self.selected_tensors()))
        self.remove_action.setEnabled(not busy and pruned)
        self.undo_action.setEnabled(not busy and self.session.document.history.can_undo)
        self.show_mask_action.setEnabled(pruned)

    def _show_menu(self, position: QPoint) -> None:
        self.update_actions()
        menu = QMenu(self)
        menu.addActions([self.prune_action, self.remove_action])
        menu.addSeparator()
        menu.addAction(self.undo_action)
        menu.addSeparator()
        menu.addAction(self.show_mask_action)
        menu.exec(self.view.viewport().mapToGlobal(position))


if __name__ == "__main__":
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    preview_session = Session()
    preview_session.document.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    widget = ModuleTreeWidget(preview_session)
    widget.prune_requested.connect(lambda names: print("prune", names))
    widget.remove_requested.connect(lambda names: print("remove", names))
    widget.show_mask_requested.connect(lambda name: print("show mask", name))
    widget.resize(760, 520)
    widget.show()
    sys.exit(app.exec())
