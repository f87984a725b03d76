"""What the app's actions do — open, prune, remove, undo, move, export — and the one gate they all pass.

Every action, menu, the history view, drag-and-drop, recent files and the autosave restore call a method of the
:class:`Controller`, and every method that changes (or replaces) the model first passes :meth:`Controller.gate`:
while a job runs it refuses, saying why, and changes nothing. Jobs never change the model themselves: a worker
*plans* an operation against the current state (``Document.plan``: read-only), and the result is committed here,
on the UI thread, in time proportional to the number of tensors. Views read immutable states, so they may draw at
any time, and the model never changes under a job.

Dialogs are looked up in this module's namespace (``QMessageBox``) so tests can patch them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QFileSystemWatcher, QObject, QSettings, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from sparsegui.collector import quietly_importing
from sparsegui.core.document import Document
from sparsegui.core.errors import Cancelled, SparseGUIError, TrustRequired
from sparsegui.core.loading import LoadOptions
from sparsegui.core.operations import Change, MaskSource
from sparsegui.core.progress import CancelToken
from sparsegui.core.recipe import load_recipe, plan_recipe, recipe_code
from sparsegui.core.steps import RemoveStep, Step
from sparsegui.gui.counting import BackgroundCounter
from sparsegui.gui.errors import show_error
from sparsegui.gui.session import Session
from sparsegui.gui.worker import JobRunner
from sparsegui.gui.writing import Writing

MAX_RECENT = 10


def is_out_of_memory(exc: BaseException) -> bool:
    """CPU out-of-memory is a plain RuntimeError; ``torch.cuda.OutOfMemoryError`` subclasses it. A failed operation
    wraps it in a PruneError, so look through the cause chain too."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError) or type(seen).__name__ == "OutOfMemoryError":
            return True
        if isinstance(seen, RuntimeError) and "out of memory" in str(seen).lower():
            return True
        seen = seen.__cause__
    return False


def can_build_classes(path: str) -> bool:
    """Whether ``path`` is a model folder whose real architecture ``transformers`` could build."""
    from sparsegui.core.loading import hf_arch
    from sparsegui.core.loading.folders import find_folder

    if not Path(path).is_dir():
        return False
    try:
        folder = find_folder(Path(path))
    except SparseGUIError:
        return False
    return folder is not None and hf_arch.can_build(folder)


class Controller(QObject, Writing):
    """Owns the job runner and the background counter; turns user intents into core calls, through one gate."""

    status = Signal(str)
    recent_changed = Signal(list)
    history_changed = Signal()
    opening = Signal(str)  # the name of the file being opened ("" when the open ended)

    def __init__(self, session: Session, parent_widget: QWidget | None = None) -> None:
        super().__init__(parent_widget)
        self.session = session
        self.parent_widget = parent_widget
        self.runner = JobRunner(self)
        self.runner.busy_changed.connect(session.set_busy)
        self.counter = BackgroundCounter(session, self)
        self.refused: list[str] = []  # what the gate turned away (tests read it)
        self.watcher = QFileSystemWatcher(self)  # the source's files: a change on disk is said at once
        self.watcher.fileChanged.connect(self._on_source_changed)
        self._said_changed = False
        session.document_replaced.connect(lambda _doc: self.history_changed.emit())
        session.document_replaced.connect(lambda _doc: self._watch_source())
        self._watch_source()

    # -- the files the model came from ---------------------------------------------------------------------------
    def _watch_source(self) -> None:
        if self.watcher.files():
            self.watcher.removePaths(self.watcher.files())
        files = [f.path for f in self.session.document.source.files]
        if files:
            self.watcher.addPaths(files)
        self._said_changed = False

    def _on_source_changed(self, _path: str) -> None:
        """Another program wrote, replaced or removed a file the open model came from: say so once."""
        if self._said_changed:
            return
        try:
            warning = self.session.document.check_source("further work")
        except SparseGUIError as exc:
            self._said_changed = True
            self.status.emit(str(exc))
            show_error(self.parent_widget, "The model's file changed on disk", exc)
            return
        if warning is not None:
            self._said_changed = True
            self.status.emit(warning)
            QMessageBox.information(self.parent_widget, "The model's file changed on disk",
                                    f"{warning}. Open the file again to see what it holds now.")

    # -- the gate ----------------------------------------------------------------------------------------------
    def gate(self, what: str) -> bool:
        """True if ``what`` may change the model now; while a job runs, say so and refuse."""
        if not self.runner.busy:
            return True
        self.refused.append(what)
        self.status.emit(f"{what}: wait for “{self.runner.label}” to finish, or cancel it")
        return False

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def _fail(self, title: str) -> Callable[[BaseException, str], None]:
        def handler(exc: BaseException, details: str) -> None:
            if isinstance(exc, Cancelled):
                self.status.emit("Cancelled; nothing changed")
                return
            show_error(self.parent_widget, title, exc, details if not str(exc) else "")

        return handler

    def _error(self, title: str, exc: BaseException) -> None:
        show_error(self.parent_widget, title, exc)

    def _changed(self) -> None:
        self.session.state_changed()
        self.history_changed.emit()
        self.counter.restart()

    # -- changing ----------------------------------------------------------------------------------------------
    def run_step(self, step: Step, masks: MaskSource = None, base_dir: Path | None = None) -> bool:
        """Plan ``step`` in a worker, then commit it here."""
        label = step.label()
        if not self.gate(label):
            return False
        doc = self.session.document
        return self._run_changes(label, lambda progress, cancel: [
            doc.plan(step, masks=masks, base_dir=base_dir, progress=progress, cancel=cancel)])

    def _run_changes(self, label: str, plan: Callable[[Any, CancelToken], list[Change]]) -> bool:
        """Plan in the worker; commit here, as one undo step (a recipe's steps are undone together)."""
        doc = self.session.document

        def success(changes: list[Change]) -> None:
            if not changes:
                self.status.emit(f"{label}: nothing to do")
                return
            command = doc.commit_all(changes, None if len(changes) == 1 else f"{label} ({len(changes)} steps)")
            self._changed()
            self.status.emit(command.label)

        def failure(exc: BaseException, details: str) -> None:
            if is_out_of_memory(exc) and doc.device.type != "cpu" and self.ask_cpu_retry(exc, doc):
                self.runner.run("Moving to cpu", lambda p, c: doc.move_to("cpu", cancel=c, progress=p),
                                lambda _target: (self.session.moved(), self._run_changes(label, plan)),
                                self._fail("Cannot move the model to the CPU"))
                return
            self._fail(f"{label} failed")(exc, details)

        self.counter.pause()
        return self.runner.run(label, plan, success, failure)

    def ask_cpu_retry(self, exc: BaseException, doc: Document) -> bool:
        """Out of memory on a GPU: nothing was applied; offer to move the model and run it on the CPU."""
        answer = QMessageBox.question(
            self.parent_widget,
            "Out of memory",
            f"The operation ran out of memory on {doc.device}; the model is unchanged.\n\n"
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}\n\n"
            "Move the model to the CPU and run it there?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        return answer == QMessageBox.StandardButton.Yes

    def prune(self, step: Step) -> bool:
        return self.run_step(step)

    def remove(self, targets: Sequence[str]) -> bool:
        return self.run_step(RemoveStep(tuple(targets)))

    def apply_recipe(self, path: str | Path) -> bool:
        path = Path(path)
        if not self.gate(f"Applying recipe {path.name}"):
            return False
        try:
            recipe = load_recipe(path)
        except Exception as exc:
            show_error(self.parent_widget, f"Cannot use recipe {path.name}", exc)
            return False
        return self.apply_recipe_data(recipe, path.parent.resolve(), f"Applying recipe {path.name}")

    def apply_recipe_data(self, recipe: dict[str, Any], base_dir: Path | None, label: str = "Applying recipe",
                          trust: bool = False) -> bool:
        """Replay a recipe as one undo step. A recipe that would import or run code asks first, listing it."""
        if not self.gate(label):
            return False
        if not trust:
            needed = recipe_code(recipe, base_dir)
            if needed and not self.ask_code_trust(label, needed):
                self.status.emit(f"{label}: not applied (it would run code you did not trust)")
                return False
            trust = bool(needed)
        doc = self.session.document
        return self._run_changes(label, lambda progress, cancel: plan_recipe(doc, recipe, base_dir, progress, cancel,
                                                                             trust))

    def ask_code_trust(self, what: str, needed: Sequence[str]) -> bool:
        """Ask before data (a recipe, an autosave) makes SparseGUI import or run code, listing exactly what."""
        listed = "\n".join(f"  • {item}" for item in needed[:20])
        answer = QMessageBox.warning(
            self.parent_widget,
            "Run code named by this file?",
            f"{what}: it names code that is not built into SparseGUI or installed as a plugin. Going on would:\n\n"
            f"{listed}\n\nGo on only if you trust where it came from.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def undo(self) -> bool:
        if not self.gate("Undo") or not self.session.document.history.can_undo:
            return False
        self.session.document.undo()
        self._changed()
        return True

    def redo(self) -> bool:
        if not self.gate("Redo") or not self.session.document.history.can_redo:
            return False
        self.session.document.redo()
        self._changed()
        return True

    def go_to(self, index: int) -> bool:
        """Undo or redo until ``index`` steps are done (a click in the history view)."""
        if not self.gate("Going back in the history") or index == self.session.document.history.index:
            return False
        self.session.document.go_to(index)
        self._changed()
        return True

    def move_to(self, device: str) -> bool:
        label = f"Moving to {device}"
        if not self.gate(label):
            return False
        doc = self.session.document

        def success(target: Any) -> None:
            self.session.moved()
            self.status.emit(f"Model moved to {target}")

        self.counter.pause()
        return self.runner.run(label, lambda p, c: doc.move_to(device, cancel=c, progress=p), success,
                               self._fail(f"Cannot move the model to {device}"))

    # -- opening -----------------------------------------------------------------------------------------------
    def open_path(self, path: str | Path, options: LoadOptions | None = None,
                  then: Callable[[], None] | None = None) -> bool:
        """Load ``path`` off the UI thread; a file that is code asks for trust first, naming what it would import.
        ``then`` runs after a successful open."""
        options = options or LoadOptions()
        path = str(path)
        name = Path(path).name
        if not self.gate(f"Opening {name}"):
            return False

        upgrade = options.classes and not options.arch and can_build_classes(path)
        if upgrade:  # the tree from the headers first (instant), the real classes after
            options = replace(options, classes=False)

        def success(doc: Document) -> None:
            self.opening.emit("")
            self.session.replace_document(doc)
            self.add_recent(path)
            self.status.emit(f"Opened {name}")
            self.counter.restart()
            if upgrade:
                self._build_classes(path, replace(options, classes=True), doc, then)
            elif then is not None:
                then()

        def failure(exc: BaseException, details: str) -> None:
            self.opening.emit("")
            if isinstance(exc, TrustRequired) and self.ask_trust(exc):
                options.trust = True
                self.open_path(path, options, then)
                return
            self.status.emit(f"Could not open {name}; still showing {self.shown_name()}")
            self._fail(f"Cannot open {name}")(exc, details)

        self.counter.pause()
        started = self.runner.run(f"Opening {name}",
                                  lambda p, c: quietly_importing("transformers", Document.open, path, options, p, c),
                                  success, failure)
        if started:
            self.opening.emit(name)
        return started

    def _build_classes(self, path: str, options: LoadOptions, shown: Document,
                       then: Callable[[], None] | None) -> None:
        """Open the folder again with its real architecture (``transformers``) and show it in place of the tree
        rebuilt from the keys, unless the model was changed meanwhile."""
        name = Path(path).name

        def success(doc: Document) -> None:
            if self.session.document is not shown or shown.history.index or shown.modified:
                self.status.emit(f"{name}: kept the tree rebuilt from the keys (the model changed meanwhile)")
                return
            chosen = self.session.selection
            self.session.replace_document(doc)
            self.session.select([s for s in chosen if s.name in doc.structure.canonical or (s.kind == "module"
                                 and s.name in doc.structure.modules)])
            self.status.emit(f"Opened {name} as {doc.source.architecture or 'its rebuilt tree'}")
            self.counter.restart()
            if then is not None:
                then()

        def failure(exc: BaseException, details: str) -> None:
            if isinstance(exc, TrustRequired) and self.ask_trust(exc):
                self._build_classes(path, replace(options, trust=True), shown, then)
                return
            self.status.emit(f"{name}: showing the tree rebuilt from the keys ({exc})")
            self.counter.restart()
            if then is not None:
                then()

        self.counter.pause()
        self.runner.run(f"Building the model's classes ({name})",
                        lambda p, c: quietly_importing("transformers", Document.open, path, options, p, c),
                        success, failure)

    def shown_name(self) -> str:
        source = self.session.document.source
        return Path(source.path).name if source.path else f"the {source.demo} demo"

    def ask_trust(self, exc: TrustRequired) -> bool:
        imports = "\n".join(f"  • {name}" for name in exc.wanted_imports[:20]) or "  (its serialized code)"
        answer = QMessageBox.warning(
            self.parent_widget,
            "Run code from this file?",
            f"{exc}\n\nOpening it would import and run:\n{imports}\n\nOpen it only if you trust where it came from.",
            QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Open

    def open_demo(self, name: str) -> bool:
        if not self.gate(f"Opening the {name} demo"):
            return False
        self.session.replace_document(Document.demo(name))
        self.status.emit(f"Opened demo {name}")
        self.counter.restart()
        return True

    def recent_files(self) -> list[str]:
        value = QSettings().value("recent_files", [])
        return [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]

    def add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        files = [path] + [f for f in self.recent_files() if f != path]
        QSettings().setValue("recent_files", files[:MAX_RECENT])
        self.recent_changed.emit(files[:MAX_RECENT])

    @property
    def modified(self) -> bool:
        return self.session.document.modified
