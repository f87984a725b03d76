"""Computing what a view shows off the UI thread, for tensors too big to read between two frames.

A :class:`LatestOnly` runs one read-only computation at a time in a Python thread and hands its result to the UI
thread through a queued signal. A request made while one runs waits, replacing any request already waiting, and
a result that a newer request has overtaken is dropped: selecting ten tensors in a row computes at most two.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal


class LatestOnly(QObject):
    """``submit(fn, apply, fail)``: ``fn()`` in a thread, then ``apply(result)`` (or ``fail(exc)``) on the UI thread,
    unless a newer ``submit`` or :meth:`cancel` came first. ``busy`` while a result is awaited."""

    _done = Signal(int, object, bool)  # generation, result or exception, succeeded

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._generation = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._waiting: tuple[int, Callable[[], Any]] | None = None
        self._callbacks: tuple[Callable[[Any], None], Callable[[BaseException], None]] | None = None
        self._done.connect(self._on_done)

    @property
    def busy(self) -> bool:
        return self._callbacks is not None

    def submit(self, fn: Callable[[], Any], apply: Callable[[Any], None],
               fail: Callable[[BaseException], None]) -> None:
        self._generation += 1
        self._callbacks = (apply, fail)
        if self._running:
            self._waiting = (self._generation, fn)
        else:
            self._start(self._generation, fn)

    def cancel(self) -> None:
        """Drop the awaited result (the running computation still ends, unseen)."""
        self._generation += 1
        self._callbacks = None
        self._waiting = None

    def _start(self, generation: int, fn: Callable[[], Any]) -> None:
        self._running = True

        def run() -> None:
            try:
                result, ok = fn(), True
            except Exception as exc:  # handed to the UI thread, never lost
                result, ok = exc, False
            with contextlib.suppress(RuntimeError):  # the receiver was deleted meanwhile
                self._done.emit(generation, result, ok)

        self._thread = threading.Thread(target=run, name="sparsegui-view", daemon=True)
        self._thread.start()

    def wait(self, seconds: float = 60.0) -> bool:
        """Drop what is awaited and let the running computation end (before the app exits: a thread still inside
        torch when the interpreter shuts down aborts the process)."""
        self.cancel()
        thread = self._thread
        if thread is not None:
            thread.join(seconds)
        return thread is None or not thread.is_alive()

    def _on_done(self, generation: int, result: object, ok: bool) -> None:
        self._running = False
        callbacks = self._callbacks
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            self._start(*waiting)
        if generation != self._generation or callbacks is None:
            return
        self._callbacks = None
        apply, fail = callbacks
        if ok:
            apply(result)
        else:
            assert isinstance(result, BaseException)
            fail(result)
