"""The History panel: every step of the core history, the current one highlighted; a click goes back or forward.

The list reads ``document.history`` (the only history there is) and a click asks the controller to go there, which
passes the same gate as every other change: while a job runs, the click is refused and nothing moves.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QAbstractItemView, QLabel, QListView, QVBoxLayout, QWidget

from sparsegui.gui.controller import Controller

OPENED = "<opened>"


class HistoryModel(QAbstractListModel):
    """Row 0 is the model as opened (or as the oldest step still kept left it); row ``i`` the state after step
    ``i``; steps after the current one can be redone."""

    def __init__(self, controller: Controller, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self._labels: list[str] = []
        self._index = 0
        controller.history_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        history = self.controller.session.document.history
        self.beginResetModel()
        self._labels = [OPENED, *history.labels]
        self._index = history.index
        self.endResetModel()

    @property
    def current(self) -> int:
        return self._index

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._labels)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._labels):
            return None
        row = index.row()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._labels[row]
        if role == Qt.ItemDataRole.FontRole and row == self._index:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ForegroundRole and row > self._index:
            return self.controller.parent_widget.palette().placeholderText() \
                if self.controller.parent_widget is not None else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return "Click to go back to this step" if row < self._index else \
                "Click to redo up to this step" if row > self._index else "The current state"
        return None


class HistoryView(QWidget):
    """The list of steps and a note on steps that can no longer be undone (the history's memory budget)."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("historyPanel")
        self.controller = controller
        self.model = HistoryModel(controller, self)
        self.list = QListView(objectName="historyList")
        self.list.setModel(self.model)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.note = QLabel(objectName="historyNote", wordWrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.note)
        self.list.clicked.connect(lambda index: self.controller.go_to(index.row()))
        self.model.modelReset.connect(self._show_current)
        self._show_current()

    def _show_current(self) -> None:
        index = self.model.index(self.model.current, 0)
        self.list.setCurrentIndex(index)
        self.list.scrollTo(index)
        dropped = self.controller.session.document.history.dropped
        self.note.setText(f"{dropped} older step(s) can no longer be undone (history memory limit); they stay in "
                          "the recipe." if dropped else "")
        self.note.setVisible(bool(dropped))

    def click_row(self, row: int) -> None:
        """What a click on ``row`` does (tests)."""
        self.list.clicked.emit(self.model.index(row, 0))
