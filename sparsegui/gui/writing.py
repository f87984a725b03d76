"""The controller's jobs that write files or only read the model: exports, statistics, the session script, a
comparison and a sensitivity scan. Each passes the gate like every other action (a job that only reads still holds
it: the model must not change under it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsegui.core.document import Document
from sparsegui.core.errors import SparseGUIError
from sparsegui.core.loading import LoadOptions
from sparsegui.core.paths import check_outputs
from sparsegui.core.progress import CancelToken
from sparsegui.core.recipe import save_recipe

if TYPE_CHECKING:
    from PySide6.QtCore import SignalInstance

    from sparsegui.gui.counting import BackgroundCounter
    from sparsegui.gui.session import Session
    from sparsegui.gui.worker import JobRunner


class Writing:
    """Mixed into :class:`~sparsegui.gui.controller.Controller`."""

    session: Session
    runner: JobRunner
    counter: BackgroundCounter
    status: SignalInstance
    history_changed: SignalInstance

    def gate(self, what: str) -> bool:
        raise NotImplementedError

    def _fail(self, title: str) -> Callable[[BaseException, str], None]:
        raise NotImplementedError

    def _error(self, title: str, exc: BaseException) -> None:
        raise NotImplementedError

    def _check_output(self, path: str | Path) -> bool:
        """Refuse (with a dialog) a target that is what the model was read from, or a special file."""
        try:
            check_outputs([path], [self.session.document.source.path])
        except SparseGUIError as exc:
            self._error("Cannot export there", exc)
            return False
        return True

    def export(self, path: str | Path, keep_masks: bool = False) -> bool:
        if not self.gate("Exporting") or not self._check_output(path):
            return False
        doc = self.session.document

        def success(written: Any) -> None:
            self.history_changed.emit()
            self.status.emit(f"Exported {written}")

        self.counter.pause()
        return self.runner.run("Exporting", lambda p, c: doc.export(path, keep_masks=keep_masks, progress=p, cancel=c),
                               success, self._fail("Export failed"))

    def export_masks(self, path: str | Path) -> bool:
        if not self.gate("Exporting masks") or not self._check_output(path):
            return False
        doc = self.session.document
        self.counter.pause()
        return self.runner.run("Exporting masks", lambda p, c: doc.export_masks(path, p, c),
                               lambda written: self.status.emit(f"Exported masks to {written}"),
                               self._fail("Export failed"))

    def export_recipe(self, path: str | Path) -> bool:
        if not self.gate("Exporting the recipe") or not self._check_output(path):
            return False
        try:
            written = save_recipe(self.session.document, path)
        except Exception as exc:
            self._error("Export failed", exc)
            return False
        self.status.emit(f"Exported recipe to {written}")
        return True


    def run_sensitivity(self, scan: Callable[[Document, Any, CancelToken], Any], done: Callable[[Any], None]
                        ) -> bool:
        """Run a sensitivity scan as a job: it reads the state and changes nothing, but it holds the gate (a job
        changing the model meanwhile would make the scan describe a model that no longer exists)."""
        label = "Sensitivity scan"
        if not self.gate(label):
            return False
        doc = self.session.document

        def success(result: Any) -> None:
            self.status.emit("Sensitivity scan done; the model is unchanged")
            done(result)

        self.counter.pause()
        return self.runner.run(label, lambda p, c: scan(doc, p, c), lambda r: (success(r), self.counter.restart()),
                               self._fail("Sensitivity scan failed"))

    def export_stats(self, path: str | Path) -> bool:
        """The per-tensor table (counts, norm removed, sizes) as CSV or a Netron attachment; reads every tensor."""
        label = f"Exporting statistics to {Path(path).name}"
        if not self.gate(label):
            return False
        try:
            check_outputs([Path(path)], [f.path for f in self.session.document.source.files])
        except SparseGUIError as exc:
            self._error("Cannot export statistics", exc)
            return False
        doc = self.session.document

        def job(progress: Any, cancel: CancelToken) -> Path:
            from sparsegui.core.inspection import add_sizes
            from sparsegui.core.statistics import write_stats

            doc.scan(progress=progress, cancel=cancel)
            report = doc.report()
            add_sizes(report, doc)
            return write_stats(report, path)

        self.counter.pause()
        return self.runner.run(label, job, lambda written: (self.status.emit(f"Wrote {written}"),
                                                            self.counter.restart()),
                               self._fail("Cannot export statistics"))

    def export_script(self, path: str | Path) -> bool:
        """Write the session (the history's steps) as a plain PyTorch script; it saves beside itself by default."""
        from sparsegui.core.export.atomic import write_text_atomic
        from sparsegui.core.script import session_script

        doc = self.session.document
        source = doc.source
        save_as = str(Path(path).with_suffix("")) + (
            ".safetensors" if (source.weights or source.path or "").endswith((".safetensors", ".json")) else ".pt")
        try:
            check_outputs([Path(path)], [f.path for f in source.files])
            write_text_atomic(path, session_script(source, doc.structure, doc.history.steps(), save_as))
        except SparseGUIError as exc:
            self._error("Cannot export the script", exc)
            return False
        self.status.emit(f"Wrote {path}: python {Path(path).name} saves the pruned model to {Path(save_as).name}")
        return True

    def compare_with(self, path: str | Path, done: Callable[[Any, Document, str], None]) -> bool:
        """Open ``path`` and compare the open model (as it is now) with it, as a job; ``done(diff, other, name)``."""
        name = Path(path).name
        label = f"Comparing with {name}"
        if not self.gate(label):
            return False
        doc = self.session.document

        def job(progress: Any, cancel: CancelToken) -> tuple[Any, Document]:
            from sparsegui.core.diff import diff_documents

            other = Document.open(path, LoadOptions(), cancel=cancel)
            return diff_documents(doc, other, progress, cancel), other

        self.counter.pause()
        return self.runner.run(label, job, lambda result: (done(result[0], result[1], name),
                                                           self.status.emit(f"Compared with {name}"),
                                                           self.counter.restart()),
                               self._fail(f"Cannot compare with {name}"))
