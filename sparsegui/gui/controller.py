"""What the app's actions do: open, prune, remove, undo, move, export — each a core call run off the UI thread.

Dialogs are looked up in this module's namespace (``QMessageBox``) so tests can patch them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QMessageBox, QWidget

from sparsegui.core.document import Document
from sparsegui.core.errors import Cancelled, TrustRequired
from sparsegui.core.loading import LoadOptions
from sparsegui.core.progress import CancelToken
from sparsegui.core.recipe import apply_recipe, load_recipe, save_recipe
from sparsegui.core.stats import Count, Key, count_tensors, forward_keys, tensor_keys
from sparsegui.gui.errors import show_error
from sparsegui.gui.session import Session
from sparsegui.gui.undo import make_undo_stack, push_commands, touched_by
from sparsegui.gui.worker import JobRunner

MAX_RECENT = 10


def is_out_of_memory(exc: BaseException) -> bool:
    """CPU out-of-memory is a plain RuntimeError; ``torch.cuda.OutOfMemoryError`` subclasses it. A rolled-back
    operation wraps it in a PruneError, so look through the cause chain too."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError) or type(seen).__name__ == "OutOfMemoryError":
            return True
        if isinstance(seen, RuntimeError) and "out of memory" in str(seen).lower():
            return True
        seen = seen.__cause__
    return False


@dataclass
class PruneRequest:
    """Everything the prune panel collected; ``global_`` runs ``global_unstructured`` over the targets."""

    method: str
    targets: list[str]
    types: list[str] = field(default_factory=list)
    amount: Any = None
    n: Any = None
    dim: int | None = None
    seed: int | None = None
    mask: str | None = None
    global_: bool = False


class Controller(QObject):
    """Owns the job runner and the undo stack; turns user intents into core calls."""

    status = Signal(str)
    recent_changed = Signal(list)

    def __init__(self, session: Session, parent_widget: QWidget | None = None) -> None:
        super().__init__(parent_widget)
        self.session = session
        self.parent_widget = parent_widget
        self.runner = JobRunner(self)
        self.runner.busy_changed.connect(session.set_busy)
        self.undo_stack: QUndoStack = make_undo_stack(session)
        self.undo_stack.cleanChanged.connect(lambda _clean: self.status.emit(""))

    # -- running -----------------------------------------------------------------------------------------------
    def _fail(self, title: str) -> Callable[[BaseException, str], None]:
        def handler(exc: BaseException, details: str) -> None:
            if isinstance(exc, Cancelled):
                self.status.emit("Cancelled; nothing changed")
                return
            show_error(self.parent_widget, title, exc, details if not str(exc) else "")

        return handler

    def _change(self, label: str, job: Callable[[Document, Any, CancelToken], list[Any]]) -> bool:
        """Run a model-changing job; its commands are mirrored on the undo stack."""
        doc = self.session.document

        def work(progress: Any, cancel: CancelToken) -> tuple[list[Any], list[str] | None, dict[Key, Count]]:
            commands = job(doc, progress, cancel)
            touched = touched_by(commands)
            # count the touched tensors here, off the UI thread, so the views only redraw
            counts = count_tensors(doc.model, tensor_keys(doc.model, touched)) if touched is not None else {}
            return commands, touched, counts

        def success(result: tuple[list[Any], list[str] | None, dict[Key, Count]]) -> None:
            commands, touched, counts = result
            push_commands(self.undo_stack, self.session, commands, counts)
            self.session.notify_changed(touched, counts)
            self.status.emit(commands[-1].label if commands else label)

        def failure(exc: BaseException, details: str) -> None:
            if is_out_of_memory(exc) and doc.device.type != "cpu" and self.ask_cpu_retry(exc, doc):
                self.runner.run("Moving to cpu", lambda p, c: doc.move_to("cpu", cancel=c),
                                lambda _target: (self.session.notify_changed([]), self._change(label, job)),
                                self._fail("Cannot move the model to the CPU"))
                return
            self._fail(f"{label} failed")(exc, details)

        return self.runner.run(label, work, success, failure)

    def ask_cpu_retry(self, exc: BaseException, doc: Document) -> bool:
        """Out of memory on a GPU: the operation was rolled back; offer to move the model and run it on the CPU."""
        answer = QMessageBox.question(
            self.parent_widget,
            "Out of memory",
            f"The operation ran out of memory on {doc.device} and was rolled back; the model is unchanged.\n\n"
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}\n\n"
            "Move the model to the CPU and run it there?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        return answer == QMessageBox.StandardButton.Yes

    # -- opening -----------------------------------------------------------------------------------------------
    def open_path(
        self, path: str | Path, options: LoadOptions | None = None, then: Callable[[], None] | None = None
    ) -> bool:
        """Load ``path`` off the UI thread (and hash it there); a file that is code asks for trust first, naming what
        it would import. ``then`` runs after a successful open."""
        options = options or LoadOptions()
        path = str(path)

        def load(progress: Any, cancel: CancelToken) -> tuple[Document, dict[Key, Count]]:
            doc = Document.open(path, options, lambda f, text: progress(0.7 * f, text), cancel)
            doc.source.digest(lambda f, text: progress(0.7 + 0.3 * f, text), cancel)
            return doc, count_tensors(doc.model, forward_keys(doc.model))  # the views' totals, off the UI thread

        def success(result: tuple[Document, dict[Key, Count]]) -> None:
            self.session.replace_document(*result)
            self.add_recent(path)
            self.status.emit(f"Opened {Path(path).name}")
            if then is not None:
                then()

        def failure(exc: BaseException, details: str) -> None:
            if isinstance(exc, TrustRequired) and self.ask_trust(exc):
                options.trust = True
                self.open_path(path, options, then)
                return
            self._fail(f"Cannot open {Path(path).name}")(exc, details)

        return self.runner.run(f"Opening {Path(path).name}", load, success, failure)

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

    def open_demo(self, name: str) -> None:
        self.session.replace_document(Document.demo(name))
        self.status.emit(f"Opened demo {name}")

    def recent_files(self) -> list[str]:
        value = QSettings().value("recent_files", [])
        return [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]

    def add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        files = [path] + [f for f in self.recent_files() if f != path]
        QSettings().setValue("recent_files", files[:MAX_RECENT])
        self.recent_changed.emit(files[:MAX_RECENT])

    # -- changing ----------------------------------------------------------------------------------------------
    def prune(self, request: PruneRequest) -> bool:
        def job(doc: Document, progress: Any, cancel: CancelToken) -> list[Any]:
            if request.global_:
                return [doc.global_prune(request.method, request.targets, request.amount, types=request.types or None,
                                         seed=request.seed, progress=progress, cancel=cancel)]
            return [doc.prune(request.method, request.targets, types=request.types or None, amount=request.amount,
                              n=request.n, dim=request.dim, seed=request.seed, mask=request.mask,
                              progress=progress, cancel=cancel)]

        return self._change(f"Pruning with {request.method}", job)

    def remove(self, targets: list[str]) -> bool:
        return self._change("Removing pruning", lambda doc, p, c: [doc.remove(targets, progress=p, cancel=c)])

    def apply_recipe(self, path: str | Path) -> bool:
        path = Path(path)
        try:
            recipe = load_recipe(path)
        except Exception as exc:
            show_error(self.parent_widget, f"Cannot use recipe {path.name}", exc)
            return False
        return self.apply_recipe_data(recipe, path.parent.resolve(), f"Applying recipe {path.name}")

    def apply_recipe_data(self, recipe: dict[str, Any], base_dir: Path | None, label: str = "Applying recipe") -> bool:
        def job(doc: Document, progress: Any, cancel: CancelToken) -> list[Any]:
            count = apply_recipe(doc, recipe, base_dir=base_dir, progress=progress, cancel=cancel)
            return doc.history.done()[-count:] if count else []

        return self._change(label, job)

    def undo(self) -> None:
        if not self.session.busy:
            self.undo_stack.undo()

    def redo(self) -> None:
        if not self.session.busy:
            self.undo_stack.redo()

    def move_to(self, device: str) -> bool:
        doc = self.session.document

        def success(target: Any) -> None:
            self.session.notify_changed([])  # where the tensors live changed, not their values
            self.status.emit(f"Model moved to {target}")

        return self.runner.run(f"Moving to {device}", lambda p, c: doc.move_to(device, cancel=c, progress=p), success,
                               self._fail(f"Cannot move the model to {device}"))

    # -- writing -----------------------------------------------------------------------------------------------
    def export(self, path: str | Path, keep_masks: bool = False) -> bool:
        doc = self.session.document

        def success(written: Any) -> None:
            self.undo_stack.setClean()
            self.status.emit(f"Exported {written}")

        return self.runner.run("Exporting", lambda p, c: doc.export(path, keep_masks=keep_masks, progress=p, cancel=c),
                               success,
                               self._fail("Export failed"))

    def export_masks(self, path: str | Path) -> bool:
        doc = self.session.document
        return self.runner.run("Exporting masks", lambda p, c: doc.export_masks(path, p, c),
                               lambda written: self.status.emit(f"Exported masks to {written}"),
                               self._fail("Export failed"))

    def export_recipe(self, path: str | Path) -> bool:
        try:
            written = save_recipe(self.session.document, path)
        except Exception as exc:
            show_error(self.parent_widget, "Export failed", exc)
            return False
        self.status.emit(f"Exported recipe to {written}")
        return True

    @property
    def modified(self) -> bool:
        return not self.undo_stack.isClean()
