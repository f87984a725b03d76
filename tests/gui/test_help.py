"""Help ▸ Keyboard Shortcuts and About, and the icons the window takes from package data."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import qVersion
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QMessageBox, QToolBar

from sparsegui import __version__
from sparsegui.gui import dialogs
from sparsegui.gui.app import APP_ID
from sparsegui.gui.help import ShortcutsDialog, action_icon, app_icon, plain_text, shortcut_rows
from sparsegui.resources import ACTION_ICONS


def test_icons_render_from_the_packaged_svgs(qapp) -> None:  # type: ignore[no-untyped-def]
    """The app icon and every action icon load and paint at menu and toolbar sizes; an unknown name is an error."""
    for icon in (app_icon(), *(action_icon(name) for name in ACTION_ICONS)):
        assert not icon.isNull()
        for size in (16, 24, 256):
            image = icon.pixmap(size, size).toImage()
            assert image.width() == size and not image.isNull()
            assert any(image.pixelColor(x, y).alpha() for x in range(size) for y in range(size))
    with pytest.raises(ValueError, match="no action icon"):
        action_icon("print")


def test_window_has_its_icon_and_desktop_id(window) -> None:  # type: ignore[no-untyped-def]
    """The window and the application carry the SVG icon; Wayland finds the desktop file by the app id."""
    assert not window.windowIcon().isNull()
    assert not QGuiApplication.windowIcon().isNull()
    assert QGuiApplication.desktopFileName() == APP_ID


def test_toolbar_actions_have_icons(window) -> None:  # type: ignore[no-untyped-def]
    """Open, Export, Undo, Redo, Prune and Remove — on the toolbar and in the tree's context menu — show icons."""
    toolbar_actions = [a for a in window.findChild(QToolBar, "mainToolbar").actions()
                       if not a.isSeparator() and a.text()]
    assert {a.objectName() for a in toolbar_actions} >= {"openAction", "exportAction", "undoAction", "redoAction",
                                                           "showPruneAction", "removeAllAction"}
    for action in toolbar_actions:
        assert not action.icon().isNull(), action.text()
    for action in (window.tree.prune_action, window.tree.remove_action, window.tree.undo_action):
        assert not action.icon().isNull(), action.text()


def test_prune_action_shows_the_prune_panel(window) -> None:  # type: ignore[no-untyped-def]
    """Edit ▸ Prune… brings the Prune dock back after it was closed."""
    window.prune_dock.hide()
    window.prune_action.trigger()
    assert window.prune_dock.isVisible()


def test_shortcuts_dialog_lists_every_shortcut_of_the_window(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    """Every action of the window that has a shortcut appears once, with all its keys, under its menu."""
    window.shortcuts_action.trigger()
    dialog = window.findChild(ShortcutsDialog, "shortcutsDialog")
    assert dialog is not None and dialog.isVisible()
    shown = dialog.rows()
    assert shown == shortcut_rows(window)
    expected = {plain_text(a) for a in window.findChildren(QAction) if any(not k.isEmpty() for k in a.shortcuts())}
    assert {text for _, text, _ in shown} == expected
    native = QKeySequence.SequenceFormat.NativeText
    by_name = {(menu, text): keys for menu, text, keys in shown}
    assert by_name[("File", "Open")] == QKeySequence(QKeySequence.StandardKey.Open).toString(native)
    assert by_name[("File", "Quit")] == QKeySequence("Ctrl+Q").toString(native)
    assert by_name[("Edit", "Prune")] == QKeySequence("Ctrl+P").toString(native)
    assert QKeySequence("Ctrl+Y").toString(native) in by_name[("Edit", "Redo")].split(", ")
    assert ("Help", "Keyboard Shortcuts") in by_name
    dialog.close()


def test_shortcuts_dialog_follows_new_actions(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    """An action added later — in a submenu, or on no menu at all — is listed too: the dialog reads the window."""
    submenu = window.menuBar().actions()[0].menu().addMenu("More")
    submenu.addAction(QAction("&Frobnicate…", window, shortcut=QKeySequence("Ctrl+Alt+F")))
    QAction("Hidden thing", window, shortcut=QKeySequence("Ctrl+Alt+H"))
    dialog = ShortcutsDialog(window)
    qtbot.addWidget(dialog)
    rows = dialog.rows()
    native = QKeySequence.SequenceFormat.NativeText
    assert ("File ▸ More", "Frobnicate", QKeySequence("Ctrl+Alt+F").toString(native)) in rows
    assert ("Other", "Hidden thing", QKeySequence("Ctrl+Alt+H").toString(native)) in rows


def test_about_names_versions_and_devices(window, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Help ▸ About shows the SparseGUI, torch and Qt versions and every device."""
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "about", lambda _parent, _title, text: shown.append(text))
    window.about_action.trigger()
    assert len(shown) == 1
    text = shown[0]
    assert f"SparseGUI {__version__}" in text and f"torch {torch.__version__}" in text and f"Qt {qVersion()}" in text
    for device in dialogs.list_devices():
        assert device.id in text
