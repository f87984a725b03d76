"""What loading a file may allocate, shared by every loader: checked before the memory is taken.

Honest files are large when their tensors are large: tensors are memory-mapped or copied from bytes the file really
holds. Only a few things let a small file ask for much more memory than it holds, and each has a budget here:

* **Compressed data** (deflated zip records, HDF5 filters, ``.npz`` members, and HDF5 chunks never written, which
  read back as the fill value) may expand at most :data:`EXPANSION_RATIO` times the bytes stored for it. Measured
  with zlib on fp32/bf16/fp16 weights: dense 1.1–1.3:1, 90 % pruned 4–5:1, even 99.9 % pruned at most 15:1. What
  expands further (all-zero buffers, uniform or structured masks reach 250–1000:1, the most deflate can do is
  ≈1030:1) is tolerated only up to :data:`EXPANSION_FLOOR` in total per file (the excess over the ratio is what
  counts), which covers constant buffers and masks of up to 2 billion entries bit-packed (SparseGUI's HDF5 masks)
  or 256 million as bytes (``.npz``). A decompression bomb or a dataset of fill value exceeds both.
* **Everything read into memory** must fit :func:`memory_budget` (what the kernel says is available).
* **Pickles** (a zip checkpoint's ``data.pkl``) are read whole: at most :data:`PICKLE_LIMIT` bytes. A state_dict's
  pickle is about 100 bytes per tensor (2 MB for 20,000 tensors).
* **JSON indexes** are parsed whole: at most :data:`JSON_LIMIT` bytes.
* **Views whose elements overlap** (a stride 0 or overlapping strides: 16 stored bytes presented as a 2.5 GB tensor)
  would allocate their full logical size the moment anything copies them. Up to :data:`VIEW_COPY_LIMIT` bytes of them
  in total are copied into ordinary tensors at load time (an ``expand``-ed buffer saved as is); larger ones are
  refused. Views that share a storage without overlapping (tied weights, slices) are untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import torch

from sparsegui.core.errors import LoadError

MiB = 1024 * 1024
EXPANSION_RATIO = 64
EXPANSION_FLOOR = 256 * MiB
PICKLE_LIMIT = 256 * MiB
JSON_LIMIT = 64 * MiB
VIEW_COPY_LIMIT = 16 * MiB


def memory_budget() -> int:
    """Bytes of memory a load may use: the kernel's MemAvailable (Linux), else physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 64 * 1024**3


def size_text(nbytes: int) -> str:
    """``nbytes`` for people: ``512 bytes``, ``3.1 KiB``, ``1.0 GiB``."""
    value = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} bytes"  # pragma: no cover


def excess(declared: int, stored: int) -> int:
    """Bytes of ``declared`` beyond what :data:`EXPANSION_RATIO` allows for ``stored`` compressed bytes."""
    return max(0, declared - EXPANSION_RATIO * max(stored, 0))


def check_expansion(filename: str, parts: Iterable[tuple[str, int, int]]) -> None:
    """Refuse when compressed or unwritten data would expand past the budget.

    ``parts`` are ``(name, declared bytes once read, bytes stored for it)``; the excess of each over
    :data:`EXPANSION_RATIO` is summed, and the file is refused when the sum passes :data:`EXPANSION_FLOOR`.
    """
    total = 0
    worst: tuple[int, str, int, int] | None = None
    for name, declared, stored in parts:
        over = excess(declared, stored)
        total += over
        if over and (worst is None or over > worst[0]):
            worst = (over, name, declared, stored)
    if total > EXPANSION_FLOOR and worst is not None:
        _, name, declared, stored = worst
        raise LoadError(
            f"{filename}: {name} expands {size_text(stored)} stored to {size_text(declared)}, past the budget for "
            f"compressed or unwritten data ({EXPANSION_RATIO}:1, beyond that {size_text(EXPANSION_FLOOR)} per file); "
            "refused"
        )


def check_memory(filename: str, what: str, declared: int, budget: int | None = None) -> None:
    """Refuse when reading ``declared`` bytes into memory would not fit the memory available."""
    budget = memory_budget() if budget is None else budget
    if declared > budget:
        raise LoadError(
            f"{filename}: {what} {size_text(declared)} ({declared} bytes), more than the {budget} bytes of memory "
            "available; refused"
        )


def overlap_bytes(tensor: torch.Tensor) -> tuple[int, int]:
    """(bytes the tensor presents, bytes its storage holds); the first exceeds the second only when elements
    overlap (a stride 0 or overlapping strides)."""
    if tensor.layout is not torch.strided or tensor.is_meta or tensor.numel() == 0:
        return 0, 0
    return tensor.numel() * tensor.element_size(), tensor.untyped_storage().nbytes()


def bounded_views(state: Mapping[str, torch.Tensor], filename: str) -> dict[str, torch.Tensor]:
    """``state`` with overlapping views copied into ordinary tensors (up to :data:`VIEW_COPY_LIMIT` bytes in total);
    a larger one is refused before anything copies it."""
    out: dict[str, torch.Tensor] = {}
    copied = 0
    for key, tensor in state.items():
        presented, held = overlap_bytes(tensor)
        if presented > held:
            if copied + presented > VIEW_COPY_LIMIT:
                raise LoadError(
                    f"{filename}: tensor {key!r} repeats {size_text(held)} of stored data as {size_text(presented)} "
                    f"(a stride-0 or overlapping view; at most {size_text(VIEW_COPY_LIMIT)} of those are copied); "
                    "refused"
                )
            copied += presented
            tensor = tensor.detach().clone(memory_format=torch.contiguous_format)
        out[key] = tensor
    return out
