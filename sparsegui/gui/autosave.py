"""Crash safety: the session's recipe is saved after every operation, and the next start offers to restore it.

An autosave is data like any other input: a damaged, hostile or stale one never stops the app from starting. It is
checked before anything is done with it; a bad one is moved aside (``autosave.json.bad-<time>``, not deleted) and
the problem is shown once.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QStandardPaths, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from sparsegui.core.export.atomic import atomic_write
from sparsegui.core.loading import LoadOptions
from sparsegui.core.recipe import recipe_code, validate_recipe
from sparsegui.gui.controller import Controller

FILE_NAME = "autosave.json"
MAX_BYTES = 16 << 20
log = logging.getLogger(__name__)


def default_path() -> Path:
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(folder or Path.home() / ".sparsegui") / FILE_NAME


class Autosaver(QObject):
    """Writes ``{"source": …, "recipe": …}`` atomically after each change; removes it when there is nothing to lose.

    The write (with its fsync, which can wait seconds behind an export's gigabytes of dirty pages) happens on a
    helper thread, in order, so an operation or an undo never waits for the disk; a failure is reported on the UI
    thread. :meth:`flush` waits for what is queued."""

    written = Signal(str)  # "" when a write succeeded, else the error; from the helper thread

    def __init__(self, controller: Controller, path: Path | None = None) -> None:
        super().__init__(controller)
        self.controller = controller
        self.path = path or default_path()
        self.failed: str | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sparsegui-autosave")
        self._last: Future[None] | None = None
        self.written.connect(self._on_written)
        controller.history_changed.connect(self.save)

    def save(self, *_: object) -> None:
        doc = self.controller.session.document
        recipe = doc.recipe()
        if not recipe["steps"] or not doc.modified:
            self.discard()
            return
        src = doc.source
        data = {
            "source": {"path": src.path, "demo": src.demo, "key": src.key, "arch": src.arch,
                       "arch_kwargs": src.arch_kwargs, "arch_path": src.arch_path},
            "recipe": recipe,
        }
        self._last = self._writer.submit(self._write, json.dumps(data, indent=1))

    def _write(self, text: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, lambda p: p.write_text(text, encoding="utf-8"))
        except Exception as exc:  # autosave must never disturb the user's work; say it once
            log.warning("autosave to %s failed: %s", self.path, exc)
            self.written.emit(str(exc) or type(exc).__name__)
            return
        self.written.emit("")

    def _on_written(self, problem: str) -> None:
        if not problem:
            self.failed = None
        elif self.failed is None:
            self.failed = problem
            self.controller.status.emit(f"Autosave failed ({problem}); export your work to keep it")

    def flush(self) -> None:
        """Wait until every queued write is on disk."""
        if self._last is not None:
            self._last.result()

    def discard(self) -> None:
        """Remove the autosave (after any queued write), now."""
        self._last = self._writer.submit(lambda: self.path.unlink(missing_ok=True))
        self.flush()


@dataclass
class Pending:
    """What a previous run left: the autosave's data, or the problem with it (the file was moved aside)."""

    data: dict[str, Any] | None = None
    problem: str | None = None
    moved_to: Path | None = None


def _check(data: object) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("source"), dict) or "recipe" not in data:
        raise ValueError("not an autosave ({\"source\": …, \"recipe\": …})")
    source = data["source"]
    for key in ("path", "demo", "key", "arch", "arch_path"):
        if source.get(key) is not None and not isinstance(source[key], str):
            raise ValueError(f"source field {key!r} is not a string")
    if source.get("arch_kwargs") is not None and not isinstance(source["arch_kwargs"], dict):
        raise ValueError("source field 'arch_kwargs' is not an object")
    if not source.get("path") and not source.get("demo"):
        raise ValueError("it names no model")
    validate_recipe(data["recipe"])
    if not data["recipe"]["steps"]:
        raise ValueError("it holds no steps")
    return data


def pending(path: Path | None = None) -> Pending:
    """The autosave a previous run left behind, checked; a bad one is moved aside and described."""
    path = path or default_path()
    if not path.is_file():
        return Pending()
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"it is larger than {MAX_BYTES >> 20} MB")
        return Pending(data=_check(json.loads(path.read_text(encoding="utf-8"))))
    except Exception as exc:  # damaged, hostile or stale: never a reason not to start
        aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            path.replace(aside)
        except OSError:
            aside = None  # type: ignore[assignment]
        return Pending(problem=str(exc) or type(exc).__name__, moved_to=aside)


def report_problem(parent: QWidget | None, found: Pending) -> None:
    """Say once that the last session's autosave could not be used."""
    where = f" It was moved to {found.moved_to}." if found.moved_to else ""
    QMessageBox.warning(parent, "Autosave not restored",
                        f"The autosave of the last session could not be used: {found.problem}.{where}")


def restore_code(data: dict[str, Any]) -> list[str]:
    """What restoring ``data`` would import or run: its recipe's methods, the architecture it names."""
    source = data["source"]
    needed = []
    if source.get("arch_path"):
        needed.append(f"import code from the folder {source['arch_path']}")
    if source.get("arch"):
        needed.append(f"import the architecture {source['arch']} and build it")
    return needed + recipe_code(data["recipe"], None)


def offer_restore(parent: QWidget | None, controller: Controller, data: dict[str, Any]) -> bool:
    """Ask whether to restore the last session's operations; if yes, reopen its model and replay them. Code the
    autosave names (an architecture, plugin methods) is listed in the question and runs only if the user agrees."""
    source = data["source"]
    steps = data["recipe"]["steps"]
    name = source.get("path") or f"the {source.get('demo')} demo"
    needed = restore_code(data)
    code = ("\n\nRestoring would also run code it names:\n" + "\n".join(f"  • {n}" for n in needed[:20]) +
            "\n\nRestore only if you trust it.") if needed else ""
    answer = QMessageBox.question(
        parent,
        "Restore unsaved work?",
        f"SparseGUI did not close normally. Restore the {len(steps)} pruning operation(s) on {name}?{code}",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No if needed else QMessageBox.StandardButton.Yes,
    )
    if answer != QMessageBox.StandardButton.Yes:
        return False
    trusted = bool(needed)
    replay = lambda: controller.apply_recipe_data(data["recipe"], None, "Restoring unsaved work",  # noqa: E731
                                                  trust=trusted)
    if source.get("demo"):
        return controller.open_demo(source["demo"]) and replay()
    options = LoadOptions(key=source.get("key"), arch=source.get("arch"), arch_kwargs=source.get("arch_kwargs") or {},
                          arch_path=source.get("arch_path"))
    return controller.open_path(source["path"], options, then=replay)
