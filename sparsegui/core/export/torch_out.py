"""``.pt`` exports written by torch's own serializer, each pruned product computed just before it is written.

``torch.save`` needs every tensor in memory before it writes a byte: a clean export would hold the products of the
whole model at once (13.5 GB for a 7B bf16), and compute them all before writing starts. Here the same serializer
(``torch.serialization._save`` inside ``_open_zipfile_writer``, what ``torch.save`` runs) pickles the state_dict
with a placeholder for each product: an allocation never touched, so it holds no memory. Its zip writer is wrapped:
when it asks for a placeholder's record, it gets the product instead, computed by a helper thread into one of two
reused buffers while the previous record was being written. The file is ``torch.save``'s, record for record
(a test compares the bytes). With a torch that lacks those two functions, ``torch.save`` of the products. Every
``.pt`` export goes this way, also one with nothing to compute: the file's data reaches the disk before torch's
writer closes it (see :func:`_flush`).
"""

from __future__ import annotations

import math
import os
import pickle
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import torch
import torch.serialization

from sparsegui.core.export.state import LazyTensors

_SAVE = getattr(torch.serialization, "_save", None)
_OPEN = getattr(torch.serialization, "_open_zipfile_writer", None)
_PROTOCOL = getattr(torch.serialization, "DEFAULT_PROTOCOL", 2)
RING = 2
"""Buffers the products take turns in: one being written while the next is computed."""


@dataclass(frozen=True)
class _Job:
    """A product to compute into a buffer when the writer reaches the placeholder ``holder`` (its data pointer)."""

    holder: int
    fill: Callable[[torch.Tensor], torch.Tensor]
    dtype: torch.dtype
    nbytes: int


def save(target: str | IO[bytes], tensors: Mapping[str, torch.Tensor]) -> None:
    """Write ``tensors`` as ``torch.save`` would write the dict of them (ties shared); the products of
    :class:`LazyTensors` just in time."""
    if _SAVE is None or _OPEN is None:
        torch.save(tensors.materialized() if isinstance(tensors, LazyTensors) else dict(tensors), target)
        return
    data, jobs = _placeholders(tensors) if isinstance(tensors, LazyTensors) else (dict(tensors), [])
    products = _Products(jobs) if jobs else None
    try:
        with _OPEN(target) as writer:
            _SAVE(data, writer if products is None else _Writer(writer, products), pickle, _PROTOCOL, False)
            if isinstance(target, str):
                _flush(target)
    finally:
        if products is not None:
            products.close()


def _flush(path: str) -> None:
    """Write the file's data to disk now, before torch's writer closes it. ext4 flushes a file that was truncated
    when opened (torch opens the temporary file with "wb") as it is closed, and torch closes it holding the
    interpreter lock: at 124M that froze the app for 100 ms. Here the same flush waits with the lock released."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _placeholders(tensors: LazyTensors) -> tuple[dict[str, torch.Tensor], list[_Job]]:
    """The dict ``torch.save`` would get, each product that can be computed into a buffer replaced by an untouched
    tensor of its shape and dtype; the products in the order the pickler will first meet them."""
    data: dict[str, torch.Tensor] = {}
    shared: dict[str, torch.Tensor] = {}
    jobs: list[_Job] = []
    for key in tensors:
        lazy = tensors.info(key)
        if lazy.ident not in shared:
            if lazy.fill is not None and math.prod(lazy.shape) > 0:
                holder = torch.empty(lazy.shape, dtype=lazy.dtype)  # virtual memory only: it is never written
                storage = holder.untyped_storage()
                jobs.append(_Job(storage.data_ptr(), lazy.fill, lazy.dtype, storage.nbytes()))
            else:
                holder = tensors[key]
            shared[lazy.ident] = holder
        data[key] = shared[lazy.ident]
    return data, jobs


class _Writer:
    """torch's zip writer, except that a placeholder's record is written from its product."""

    def __init__(self, inner: Any, products: _Products) -> None:
        self._inner = inner
        self._products = products

    def write_record(self, name: str, data: Any, size: int) -> None:
        if isinstance(data, torch.UntypedStorage) and self._products.holds(data.data_ptr()):
            buffer = self._products.take(data.data_ptr())
            try:
                self._inner.write_record(name, buffer.untyped_storage(), size)
            finally:
                self._products.give_back()
            return
        self._inner.write_record(name, data, size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Products:
    """A helper thread computing the products in order, each into the next free buffer of a ring."""

    def __init__(self, jobs: list[_Job]) -> None:
        self._jobs = jobs
        self._holders = {job.holder for job in jobs}
        size = max(job.nbytes for job in jobs)
        self._ring = [torch.empty(size, dtype=torch.uint8) for _ in range(min(RING, len(jobs)))]
        self._free = threading.Semaphore(len(self._ring))
        self._ready: queue.Queue[tuple[int, torch.Tensor] | BaseException] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparsegui-export-products", daemon=True)
        self._thread.start()

    def holds(self, holder: int) -> bool:
        return holder in self._holders

    def _run(self) -> None:
        try:
            for index, job in enumerate(self._jobs):
                self._free.acquire()
                if self._stop.is_set():
                    return
                buffer = self._ring[index % len(self._ring)]
                job.fill(buffer[: job.nbytes].view(job.dtype))
                self._ready.put((job.holder, buffer))
        except BaseException as exc:  # handed to the writer, which raises it
            self._ready.put(exc)

    def take(self, holder: int) -> torch.Tensor:
        """The buffer holding the product of ``holder`` (waits for it); :meth:`give_back` once written."""
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise item
        made, buffer = item
        if made != holder:
            raise AssertionError("torch's serializer asked for the tensors in an unexpected order")
        return buffer

    def give_back(self) -> None:
        self._free.release()

    def close(self) -> None:
        """Stop the helper (after a failure it may be waiting for a buffer) and wait for it."""
        self._stop.set()
        self._free.release(len(self._ring))
        self._thread.join()
