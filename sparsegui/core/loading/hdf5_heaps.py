"""Check an HDF5 file's global heap collections before libhdf5 parses them.

Variable-length strings (SparseGUI's own attributes, and many other files') live in global heap collections
(``GCOL``). libhdf5 walks a collection's objects by their declared sizes and never stops on a free-space object of
size zero: one damaged byte makes it loop forever, holding the GIL, where no timeout can reach. So every collection
in the file is walked here first, in Python, and a file whose walk would not end cleanly at the collection's end is
refused.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from sparsegui.core.loading.sniff import HDF5_MAGIC

_SIGNATURE = b"GCOL\x01"  # signature and version 1, the only version there is


def _length_size(view: mmap.mmap, size: int) -> int:
    """The superblock's "size of lengths" (8 unless the file says otherwise)."""
    base = 0
    while base + 16 <= size and view[base : base + 8] != HDF5_MAGIC:
        base = 512 if base == 0 else base * 2
    if base + 16 > size:
        return 8
    version = view[base + 8]
    field = view[base + 14] if version in (0, 1) else view[base + 10]
    return field if field in (2, 4, 8) else 8


def _collection_problem(view: mmap.mmap, at: int, size: int, length: int) -> str | None:
    """Why the collection at ``at`` would be misread, or None when its objects tile it exactly."""
    header = 8 + length  # signature, version, 3 reserved bytes, collection size
    if at + header > size:
        return "is cut short"
    declared = int.from_bytes(view[at + 8 : at + header], "little")
    end = at + declared
    if declared < header or end > size:
        return f"declares {declared} bytes"
    position = at + header
    while position + header <= end:  # an object header is as long as the collection header
        index = int.from_bytes(view[position : position + 2], "little")
        object_size = int.from_bytes(view[position + 8 : position + header], "little")
        step = object_size if index == 0 else header + (object_size + 7) // 8 * 8
        if step < header or position + step > end:
            return f"holds an object of {object_size} bytes at offset {position - at}"
        position += step
    return None


def global_heap_problem(path: Path) -> str | None:
    """A one-line reason to refuse ``path`` (a damaged global heap collection), or None."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        if size == 0:
            return None
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            length = _length_size(view, size)
            at = view.find(_SIGNATURE)
            while at >= 0:
                problem = _collection_problem(view, at, size, length)
                if problem:
                    return f"damaged HDF5 file (global heap collection at byte {at} {problem})"
                at = view.find(_SIGNATURE, at + 1)
    return None
