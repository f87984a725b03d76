"""Counting zeros in the background: the views show the model at once and the numbers as they come.

A :class:`BackgroundCounter` counts the tensors of the shown state whose counts are not known yet, in a Python
thread (counting only reads immutable states), the selected tensor first. It stops while a job runs (the job has
the machine) and starts again after. Every few tensors it tells the session, which redraws what changed.
"""

from __future__ import annotations

import contextlib
import threading
import time

from PySide6.QtCore import QObject, Signal

from sparsegui.core.errors import Cancelled
from sparsegui.core.progress import CancelToken
from sparsegui.core.state import ModelState
from sparsegui.core.stats import measure, measured
from sparsegui.gui.session import Session

REPORT_EVERY = 0.25  # seconds between two reports to the views


class BackgroundCounter(QObject):
    """Counts zeros and NaN/Inf of the shown state's tensors off the UI thread."""

    _counted = Signal(object, bool)  # the state counted in, finished
    progressed = Signal(float, str)

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._cancel: CancelToken | None = None
        self._thread: threading.Thread | None = None
        self._first: list[str] = []
        self._lock = threading.Lock()
        self._counted.connect(self._on_counted)
        session.busy_changed.connect(lambda busy: self.pause() if busy else self.restart())
        session.selection_changed.connect(self._on_selection)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pause(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()
            self._cancel = None

    def restart(self) -> None:
        """Count what the shown state does not know yet (nothing to do: nothing starts)."""
        self.pause()
        if self.session.busy:
            return
        state, structure = self.session.state, self.session.document.structure
        todo = [n for n in structure.tensors if not measured(state.tensors[n])]
        if not todo:
            return
        token = CancelToken()
        self._cancel = token
        thread = threading.Thread(target=self._run, args=(state, todo, token), name="sparsegui-count", daemon=True)
        self._thread = thread
        thread.start()

    def wait(self, seconds: float = 30.0) -> bool:
        thread = self._thread
        if thread is not None:
            thread.join(seconds)
        return not self.running

    def _on_selection(self, items: list[object]) -> None:
        names = [getattr(i, "name", "") for i in items if getattr(i, "kind", "") in ("tensor", "parameter")]
        with self._lock:
            self._first = [n.removesuffix("_orig") for n in names]

    def _next(self, state: ModelState, todo: list[str]) -> str | None:
        canonical = self.session.document.structure.canonical
        with self._lock:
            for name in self._first:
                name = canonical.get(name, name)
                if name in todo and not measured(state.tensors[name]):
                    todo.remove(name)
                    return name
        while todo:
            name = todo.pop(0)
            if not measured(state.tensors[name]):
                return name
        return None

    def _run(self, state: ModelState, todo: list[str], token: CancelToken) -> None:
        total = len(todo)
        last = time.monotonic()
        done = 0
        while not token.cancelled:
            name = self._next(state, todo)
            if name is None:
                break
            self._emit(float(done) / total, f"counting zeros: {name}")
            try:
                measure(state.tensors[name], token)  # a replaced state stops the pass within a chunk
            except Cancelled:
                break
            done += 1
            if time.monotonic() - last > REPORT_EVERY:
                last = time.monotonic()
                self._report(state, False)
        self._report(state, not token.cancelled)

    def _emit(self, fraction: float, text: str) -> None:
        with contextlib.suppress(RuntimeError):  # the receiver was deleted meanwhile
            self.progressed.emit(fraction, text)

    def _report(self, state: ModelState, finished: bool) -> None:
        with contextlib.suppress(RuntimeError):
            self._counted.emit(state, finished)

    def _on_counted(self, state: object, finished: bool) -> None:
        if state is self.session.state:
            self.session.counts_arrived()
            if finished:
                self.progressed.emit(1.0, "")
