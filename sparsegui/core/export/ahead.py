"""Compute the next piece while the current one is written: a one-piece read-ahead on a helper thread.

A streaming export alternates computing ``X_orig * X_mask`` for a piece (CPU) and writing it (the kernel copies it
into the page cache and flushes it); done in turn, the two add up. :func:`read_ahead` runs the piece generator one
piece ahead on a thread, so the product of the next piece is made while this one is written. The generator must
not reuse a piece's memory before two more pieces have been asked of it (``TensorState.effective_chunks`` keeps a
ring of three buffers for this).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

_T = TypeVar("_T")
_END = object()


def read_ahead(pieces: Iterator[_T]) -> Iterator[_T]:
    """The items of ``pieces``, each computed while the previous one is used. An error in ``pieces`` is raised
    here, at the item it happened at; stopping early stops the helper thread."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for piece in pieces:
                while not stop.is_set():
                    try:
                        handoff.put(piece, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(_END)
        except BaseException as exc:  # handed to the consumer, raised where it reads
            handoff.put(exc)

    helper = threading.Thread(target=produce, name="sparsegui-ahead", daemon=True)
    helper.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while helper.is_alive():  # let a blocked put through, then wait for the thread to end
            with contextlib.suppress(queue.Empty):
                handoff.get_nowait()
            helper.join(0.05)
