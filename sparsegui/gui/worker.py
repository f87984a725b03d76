"""Running long core jobs off the UI thread, one at a time per document, with progress and cancel.

The job is a plain function ``fn(progress, cancel) -> result`` (see ``sparsegui.core.progress``); it must not touch
Qt widgets. Results and errors come back to the UI thread through queued signals.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from sparsegui.core.progress import CancelToken

Job = Callable[[Callable[[float, str], None], CancelToken], Any]


class _JobThread(QThread):
    progressed = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(object, str)

    def __init__(self, job: Job, cancel: CancelToken) -> None:
        super().__init__()
        self._job = job
        self._cancel = cancel

    def run(self) -> None:
        try:
            result = self._job(self.progressed.emit, self._cancel)
        except BaseException as exc:  # reported to the UI thread, never lost
            self.failed.emit(exc, traceback.format_exc())
        else:
            self.succeeded.emit(result)


class JobRunner(QObject):
    """Runs one job at a time; ``busy_changed`` lets the window disable conflicting actions meanwhile."""

    busy_changed = Signal(bool)
    progressed = Signal(float, str)
    started = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: _JobThread | None = None
        self._cancel: CancelToken | None = None
        self.label = ""

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def run(
        self,
        label: str,
        job: Job,
        on_success: Callable[[Any], None],
        on_failure: Callable[[BaseException, str], None],
    ) -> bool:
        """Start ``job``; returns False (and starts nothing) if another job is still running."""
        if self._thread is not None:
            return False
        self.label = label
        self._cancel = CancelToken()
        thread = _JobThread(job, self._cancel)
        thread.progressed.connect(self.progressed)
        thread.succeeded.connect(lambda result: self._finish(thread, lambda: on_success(result)))
        thread.failed.connect(lambda exc, tb: self._finish(thread, lambda: on_failure(exc, tb)))
        self._thread = thread
        self.busy_changed.emit(True)
        self.started.emit(label)
        thread.start()
        return True

    def _finish(self, thread: _JobThread, callback: Callable[[], None]) -> None:
        thread.wait()
        self._thread = None
        self._cancel = None
        self.busy_changed.emit(False)
        callback()
        thread.deleteLater()

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the running job ends (for shutdown and tests)."""
        thread = self._thread
        return True if thread is None else thread.wait(msecs)
