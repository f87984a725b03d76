"""Crash safety: the session's recipe is saved after every operation, and the next start offers to restore it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QStandardPaths
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QMessageBox, QWidget

from sparsegui.core.export.atomic import atomic_write
from sparsegui.core.loading import LoadOptions
from sparsegui.core.recipe import validate_recipe
from sparsegui.gui.controller import Controller
from sparsegui.gui.session import Session

FILE_NAME = "autosave.json"


def default_path() -> Path:
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(folder or Path.home() / ".sparsegui") / FILE_NAME


class Autosaver(QObject):
    """Writes ``{"source": …, "recipe": …}`` atomically after each change; removes it when there is nothing to lose."""

    def __init__(self, session: Session, stack: QUndoStack, path: Path | None = None) -> None:
        super().__init__(stack)
        self.session = session
        self.stack = stack
        self.path = path or default_path()
        stack.indexChanged.connect(self.save)
        stack.cleanChanged.connect(self.save)

    def save(self, *_: object) -> None:
        doc = self.session.document
        steps = doc.recipe()["steps"]
        if not steps or self.stack.isClean():
            self.discard()
            return
        src = doc.source
        data = {
            "source": {"path": src.path, "demo": src.demo, "key": src.key, "arch": src.arch,
                       "arch_kwargs": src.arch_kwargs, "arch_path": src.arch_path},
            "recipe": doc.recipe(),
        }
        text = json.dumps(data, indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(self.path, lambda p: p.write_text(text, encoding="utf-8"))
        except Exception:  # autosave must never disturb the user's work
            return

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def pending(path: Path | None = None) -> dict[str, Any] | None:
    """The autosave a previous run left behind, or None (an unreadable one is dropped)."""
    path = path or default_path()
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        validate_recipe(data["recipe"])
        if not data["recipe"]["steps"]:
            raise ValueError("empty")
        return data
    except Exception:
        path.unlink(missing_ok=True)
        return None


def offer_restore(parent: QWidget | None, controller: Controller, data: dict[str, Any]) -> bool:
    """Ask whether to restore the last session's operations; if yes, reopen its model and replay them."""
    source = data["source"]
    steps = data["recipe"]["steps"]
    name = source.get("path") or f"the {source.get('demo')} demo"
    answer = QMessageBox.question(
        parent,
        "Restore unsaved work?",
        f"SparseGUI did not close normally. Restore the {len(steps)} pruning operation(s) on {name}?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.Yes,
    )
    if answer != QMessageBox.StandardButton.Yes:
        return False
    replay = lambda: controller.apply_recipe_data(data["recipe"], None, "Restoring unsaved work")  # noqa: E731
    if source.get("demo"):
        controller.open_demo(source["demo"])
        replay()
        return True
    options = LoadOptions(key=source.get("key"), arch=source.get("arch"), arch_kwargs=source.get("arch_kwargs") or {},
                          arch_path=source.get("arch_path"))
    return controller.open_path(source["path"], options, then=replay)
