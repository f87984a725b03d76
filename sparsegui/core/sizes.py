"""What a tensor's zeros buy in bytes, layout by layout — honestly: zeros in a dense file make nothing smaller or
faster by themselves; only a layout that leaves them out (and a runtime that reads it) does.

Per tensor (its forward values: ``X_orig * X_mask`` when pruned), in bytes:

- ``dense`` — as stored: numel × itemsize;
- ``dense_mask`` — dense plus a 1-bit mask (what SparseGUI keeps, what ``--keep-masks`` costs at best);
- ``csr`` — compressed sparse rows of the tensor as a matrix (first dim × the rest): the nonzero values, an int32
  column index per nonzero and int32 row offsets (rows + 1) — what ``torch.sparse_csr_tensor`` with int32 indices
  and cuSPARSE hold;
- ``nm_2_4`` — 2:4 semi-structured: half the values plus 4 bits of metadata per group of 4 (2 bits per kept value),
  only for a 2-D weight whose every group along the input axis keeps at most 2 (None otherwise);
- ``shrunk`` — dense after removing the output rows and input columns that are entirely zero (what structured
  pruning would give this tensor alone; the neighbouring layers' matching rows or columns would shrink too).

Runtimes: dense is what every framework loads; CSR helps on CPUs and GPUs only at high sparsity (above ~90 %);
2:4 needs sparse tensor-core kernels (GPU); a shrunk tensor is an ordinary smaller dense layer.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

from sparsegui.core.bitmask import CHUNK
from sparsegui.core.nm import group_counts
from sparsegui.core.state import TensorState, computable

LAYOUTS = ("dense", "dense_mask", "csr", "nm_2_4", "shrunk")
NOTE = ("Zeros in a dense file make it neither smaller nor faster: only a layout that leaves them out, read by a "
        "runtime that supports it (CSR: sparse kernels, mostly above ~90% sparsity; 2:4: GPU sparse tensor cores; "
        "removed rows/channels: any runtime), turns sparsity into bytes or speed.")


@dataclass(frozen=True)
class TensorSizes:
    dense: int
    dense_mask: int
    csr: int
    nm_2_4: int | None
    shrunk: int

    def to_json(self) -> dict[str, int | None]:
        return asdict(self)

    def best(self) -> tuple[str, int]:
        """The smallest layout and its size."""
        options = {k: v for k, v in asdict(self).items() if v is not None}
        name = min(options, key=lambda k: options[k])
        return name, options[name]


_cache: weakref.WeakKeyDictionary[TensorState, TensorSizes] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size() if dtype != torch.bool else 1


def tensor_sizes(ts: TensorState, axes: tuple[str | None, ...]) -> TensorSizes:
    """The sizes of ``ts`` in every layout (one pass over its values; cached)."""
    with _lock:
        found = _cache.get(ts)
    if found is not None:
        return found
    shape = ts.values.shape
    numel = ts.numel
    item = _itemsize(ts.values.dtype)
    dense = numel * item
    rows = shape[0] if len(shape) >= 1 else 1
    cols = numel // rows if rows else 0
    effective = ts.effective().detach()
    flat = effective.reshape(-1)
    nonzero = 0
    for start in range(0, numel, CHUNK):
        nonzero += int(torch.count_nonzero(computable(flat[start : start + CHUNK])))
    csr = nonzero * (item + 4) + (rows + 1) * 4
    nm = None
    matrix_2d = len(shape) == 2 and "in" in axes and "out" in axes and shape[axes.index("in")] % 4 == 0 and numel
    if matrix_2d and bool((group_counts(computable(effective) != 0, 4, axes.index("in")) <= 2).all()):
        nm = numel // 2 * item + numel // 8
    if len(shape) >= 2 and numel:
        matrix = computable(effective).reshape(rows, cols) != 0
        live_rows = int(matrix.any(dim=1).sum())
        inner = computable(effective).reshape(shape[0], shape[1], -1) != 0
        live_in = int(inner.any(dim=2).any(dim=0).sum())
        per = math.prod(shape[2:]) if len(shape) > 2 else 1
        shrunk = live_rows * live_in * per * item  # (out, in) or Conv1D's (in, out): the product is the same
    else:
        shrunk = nonzero * item if nonzero < numel and len(shape) == 1 else dense
    sizes = TensorSizes(dense, dense + (numel + 7) // 8, csr, nm, shrunk)
    with _lock:
        _cache[ts] = sizes
    return sizes


def total_sizes(sizes: Iterable[TensorSizes]) -> dict[str, int]:
    """Sums over tensors; a tensor without a 2:4 size counts at its dense size in the 2:4 total."""
    out = dict.fromkeys(LAYOUTS, 0)
    for s in sizes:
        for layout in LAYOUTS:
            value = getattr(s, layout)
            out[layout] += s.dense if value is None else value
    return out
