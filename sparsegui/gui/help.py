"""Desktop integration and the Help menu: icons from the packaged SVGs, Help ▸ Keyboard Shortcuts.

Help ▸ About is ``dialogs.show_about``. The shortcuts dialog is built from the window's own actions, so it lists what
the menus really bind (platform key names included) and never goes stale.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QMainWindow,
    QMenu,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sparsegui.resources import ACTION_ICONS, APP_ICON, resource_path

OTHER = "Other"


def app_icon() -> QIcon:
    """The application icon (scalable: Qt renders the SVG at whatever size the platform asks for)."""
    return QIcon(str(resource_path(APP_ICON)))


def action_icon(name: str) -> QIcon:
    """One of the toolbar icons: ``open``, ``export``, ``undo``, ``redo``, ``prune``, ``remove``."""
    if name not in ACTION_ICONS:
        raise ValueError(f"no action icon {name!r}; there are {', '.join(ACTION_ICONS)}")
    return QIcon(str(resource_path(f"{name}.svg")))


def plain_text(action: QAction) -> str:
    """The action's label as a person reads it: mnemonic ampersands and a trailing "…" dropped."""
    return action.text().replace("&&", "\0").replace("&", "").replace("\0", "&").removesuffix("…")


def key_text(action: QAction) -> str:
    """Every shortcut of the action in the platform's notation (``Ctrl+Shift+Z, Ctrl+Y``)."""
    keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts() if not k.isEmpty()]
    return ", ".join(dict.fromkeys(keys))  # a platform may bind two standard keys to one sequence


def _menu_rows(menu: QMenu, path: str, seen: set[int], rows: list[tuple[str, str, str]]) -> None:
    for action in menu.actions():
        if action.isSeparator():
            continue
        if action.menu() is not None:
            _menu_rows(action.menu(), f"{path} ▸ {plain_text(action)}", seen, rows)  # type: ignore[arg-type]
            continue
        seen.add(id(action))
        if key_text(action):
            rows.append((path, plain_text(action), key_text(action)))


def shortcut_rows(window: QMainWindow) -> list[tuple[str, str, str]]:
    """``(menu, action, keys)`` for every action of ``window`` with a shortcut: the menus' actions in menu order,
    then actions found only elsewhere (toolbar, context menus) under "Other"."""
    rows: list[tuple[str, str, str]] = []
    seen: set[int] = set()
    for top in window.menuBar().actions():
        if top.menu() is not None:
            _menu_rows(top.menu(), plain_text(top), seen, rows)  # type: ignore[arg-type]
    for action in window.findChildren(QAction):
        if id(action) not in seen and key_text(action) and plain_text(action):
            seen.add(id(action))
            rows.append((OTHER, plain_text(action), key_text(action)))
    return rows


class ShortcutsDialog(QDialog):
    """A two-column list, Action and Shortcut, grouped by menu."""

    def __init__(self, window: QMainWindow, parent: QWidget | None = None) -> None:
        super().__init__(parent or window)
        self.setObjectName("shortcutsDialog")
        self.setWindowTitle("Keyboard Shortcuts")
        self.tree = QTreeWidget(objectName="shortcutsTree")
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Action", "Shortcut"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        groups: dict[str, QTreeWidgetItem] = {}
        rows = shortcut_rows(window)
        for menu, text, keys in rows:
            if menu not in groups:
                groups[menu] = QTreeWidgetItem(self.tree, [menu])
                font = groups[menu].font(0)
                font.setBold(True)
                groups[menu].setFont(0, font)
                groups[menu].setFirstColumnSpanned(True)
            QTreeWidgetItem(groups[menu], [text, keys])
        self.tree.expandAll()
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree)
        layout.addWidget(buttons)
        self.resize(460, 420)

    def rows(self) -> list[tuple[str, str, str]]:
        """What the dialog shows, as ``(menu, action, keys)``."""
        shown = []
        for i in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(i)
            for j in range(group.childCount()):
                item = group.child(j)
                shown.append((group.text(0), item.text(0), item.text(1)))
        return shown


def show_shortcuts(window: QMainWindow) -> ShortcutsDialog:
    """Open the shortcuts list next to the window (not modal: it can stay open while working)."""
    dialog = ShortcutsDialog(window)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog
