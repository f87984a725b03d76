"""Norm removed: how much of a tensor's energy its zeros took, ‖W ⊙ (1 − M)‖₂ / ‖W‖₂ (Frobenius).

``W`` is the tensor as it was loaded (before any pruning of this session: ``X_orig``, or what ``remove`` baked in
started from it) and ``M`` every mask applied since — the current one and the ones ``remove`` made permanent — so
the number is 0 for an unpruned tensor, and for a tensor already sparse in the file it is relative to what was
loaded. For several tensors (a layer, the model) the norms are combined as one concatenated tensor:
sqrt(Σ removed²) / sqrt(Σ ‖W‖²).

Each measurement is one pass over ``W``; it is cached per tensor state (states never change). ``‖W‖²`` of a loaded
tensor also comes for free from the zero-counting pass (:attr:`Scan.sumsq`).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from sparsegui.core.bitmask import CHUNK, BitMask
from sparsegui.core.progress import CancelToken, check
from sparsegui.core.state import Baked, TensorState, Values, computable, squares


@dataclass(frozen=True)
class Energy:
    """``total`` = ‖W‖², ``removed`` = ‖W ⊙ (1 − M)‖² (float64 sums)."""

    total: float
    removed: float

    @property
    def norm_removed(self) -> float:
        if not self.total or self.removed == 0:
            return 0.0
        return math.sqrt(self.removed / self.total) if self.total > 0 else math.nan

    def __add__(self, other: Energy) -> Energy:
        return Energy(self.total + other.total, self.removed + other.removed)


_cache: weakref.WeakKeyDictionary[TensorState, Energy] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def lineage(ts: TensorState) -> tuple[Values, list[BitMask]]:
    """The values as loaded and every mask applied to them since (baked by ``remove``, then the current one)."""
    masks = [ts.pruning.mask] if ts.pruning is not None else []
    values = ts.values
    while isinstance(values, Baked):
        masks.append(values.mask)
        values = values.before
    return values, masks


def known(ts: TensorState) -> Energy | None:
    """The energy of ``ts`` if it is known without reading the tensor, else None."""
    with _lock:
        cached = _cache.get(ts)
    if cached is not None:
        return cached
    root, masks = lineage(ts)
    scanned = root.scanned
    if not masks and scanned is not None and scanned.sumsq is not None:
        return Energy(scanned.sumsq, 0.0)
    return None


def norm_removed_known(ts: TensorState) -> float | None:
    """Norm removed of ``ts`` when known without reading it (0 for a tensor no mask ever touched)."""
    if not lineage(ts)[1]:
        return 0.0
    energy = known(ts)
    return None if energy is None else energy.norm_removed


def measure(ts: TensorState, cancel: CancelToken | None = None) -> Energy:
    """The energy of ``ts`` (one pass over the loaded values and the masks, then cached; ``cancel`` stops the pass
    between chunks, keeping nothing)."""
    energy = known(ts)
    if energy is not None:
        return energy
    root, masks = lineage(ts)
    if not masks:
        sumsq = root.scan(cancel).sumsq
        energy = Energy(math.nan if sumsq is None else sumsq, 0.0)
    else:
        energy = _pass(root.tensor(), masks, cancel)
    with _lock:
        _cache[ts] = energy
    return energy


def _pass(values: torch.Tensor, masks: list[BitMask], cancel: CancelToken | None = None) -> Energy:
    flat = values.detach().reshape(-1)
    total = removed = 0.0
    for start in range(0, flat.numel(), CHUNK):
        check(cancel)
        stop = min(start + CHUNK, flat.numel())
        part = computable(flat[start:stop])
        if part.dtype != values.dtype and not part.is_floating_point():
            return Energy(math.nan, math.nan)  # raw bytes: no magnitudes to measure
        keep = masks[0].chunk(start, stop)
        for mask in masks[1:]:
            keep = keep & mask.chunk(start, stop)
        kept = torch.from_numpy(keep)
        if part.device.type != "cpu":
            kept = kept.to(part.device)
        total += squares(part)
        removed += squares(torch.where(kept, torch.zeros((), dtype=part.dtype, device=part.device), part))
    return Energy(total, removed)


def combined(energies: Iterable[Energy | None]) -> float | None:
    """Norm removed of several tensors taken together (None while any is unknown)."""
    total = Energy(0.0, 0.0)
    for energy in energies:
        if energy is None:
            return None
        total += energy
    return total.norm_removed
