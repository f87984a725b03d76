"""GUI fixtures: an isolated QSettings store and a main window on the lenet demo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from sparsegui.gui.app import configure_application


@pytest.fixture
def isolated_settings(tmp_path: Path) -> Iterator[Path]:
    """QSettings writes under tmp_path, never into the user's real configuration."""
    configure_application()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    QSettings().clear()
    yield tmp_path / "settings"
    QSettings().clear()


@pytest.fixture
def window(qtbot, isolated_settings, monkeypatch):  # type: ignore[no-untyped-def]
    """The main window; error dialogs are recorded in ``window.shown_errors`` instead of blocking the test."""
    from sparsegui.gui.main_window import MainWindow

    shown: list[str] = []
    monkeypatch.setattr(
        "sparsegui.gui.controller.show_error", lambda _p, title, exc, *a: shown.append(f"{title}: {exc}")
    )
    win = MainWindow()
    win.shown_errors = shown
    win.show()
    yield win
    win.controller.runner.wait()
    win.session.document.history.mark_clean()  # so closing does not ask about unsaved changes
    win.close()
    win.deleteLater()
