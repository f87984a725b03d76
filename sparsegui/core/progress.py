"""Progress reporting and cancellation for long core jobs (no Qt: the GUI wraps these in a worker)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sparsegui.core.errors import Cancelled

ProgressCallback = Callable[[float, str], None]
"""Called with a fraction in [0, 1] and a short description of the current step."""


class CancelToken:
    """A flag another thread sets to ask a job to stop at its next check point."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user; nothing was changed")


def report(progress: ProgressCallback | None, fraction: float, text: str) -> None:
    """Call ``progress`` if there is one."""
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), text)


def check(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` was set."""
    if cancel is not None:
        cancel.raise_if_cancelled()
