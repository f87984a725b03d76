"""Sparsity totals of a state: per tensor and per module subtree, from counts cached on the tensors' states.

A tensor's zeros are known without reading it when its values are known to hold no zeros and no NaN/Inf (then
they are the mask's zeros); otherwise they are counted once (:meth:`~sparsegui.core.state.TensorState.scan`), by
whoever asks first — a view in the background, the command line in one pass. :class:`Totals` never counts: it
sums what is known and says ``None`` for what is not yet. Undo and redo bring back states whose counts are
cached already.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sparsegui.core import energy
from sparsegui.core.energy import Energy
from sparsegui.core.names import ancestors
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.state import ModelState, TensorState
from sparsegui.core.structure import ModelStructure


@dataclass(frozen=True)
class Count:
    """Elements and zeros of a tensor or a subtree (``zeros`` None: not counted yet)."""

    numel: int
    zeros: int | None

    @property
    def sparsity(self) -> float | None:
        if self.zeros is None:
            return None
        return self.zeros / self.numel if self.numel else None

    @property
    def known(self) -> bool:
        return self.zeros is not None

    def __add__(self, other: Count) -> Count:
        zeros = None if self.zeros is None or other.zeros is None else self.zeros + other.zeros
        return Count(self.numel + other.numel, zeros)


EMPTY = Count(0, 0)


def measured(ts: TensorState) -> bool:
    """Whether the zeros and the norm removed of ``ts`` are known (nothing left to read)."""
    return ts.scanned is not None and energy.known(ts) is not None


def measure(ts: TensorState, cancel: CancelToken | None = None) -> None:
    """Count the zeros and measure the norm removed of ``ts`` (each at most one pass, then cached); ``cancel`` stops
    a pass between chunks (:class:`~sparsegui.core.errors.Cancelled`), keeping nothing of it."""
    ts.scan(cancel)
    energy.measure(ts, cancel)


class Totals:
    """Counts of ``state``'s tensors and module subtrees (a tied tensor counts once, under its canonical name),
    and their norm removed (:mod:`sparsegui.core.energy`)."""

    def __init__(self, structure: ModelStructure, state: ModelState) -> None:
        self.structure = structure
        self.state = state
        self._modules: dict[str, Count] = {}
        self._energies: dict[str, Energy | None] = {}

    def tensor(self, name: str) -> Count:
        """The count of tensor ``name`` (any of its names)."""
        ts = self.state.tensors[self.structure.canonical.get(name, name)]
        known = ts.scanned
        return Count(ts.numel, None if known is None else known.zeros)

    def module(self, path: str) -> Count:
        """The sum over the tensors of the module at ``path`` and every module below it (each tensor once, under
        the module that holds its canonical name)."""
        if not self._modules:
            totals: dict[str, Count] = dict.fromkeys(self.structure.modules, EMPTY)
            for name, slot in self.structure.tensors.items():
                count = self.tensor(name)
                for above in ancestors(slot.module):
                    if above in totals:
                        totals[above] += count
            self._modules = totals
        return self._modules.get(path, EMPTY)

    @property
    def total(self) -> Count:
        return self.module("")

    def norm_removed(self, name: str) -> float | None:
        """Norm removed of tensor ``name`` (any of its names); None while not measured."""
        return energy.norm_removed_known(self.state.tensors[self.structure.canonical.get(name, name)])

    def module_norm_removed(self, path: str) -> float | None:
        """Norm removed of the module at ``path`` and everything below it, as one tensor (None while any of its
        tensors is not measured)."""
        if not self._energies:
            sums: dict[str, Energy | None] = dict.fromkeys(self.structure.modules, Energy(0.0, 0.0))
            for name, slot in self.structure.tensors.items():
                known = energy.known(self.state.tensors[name])
                for above in ancestors(slot.module):
                    if above in sums:
                        before = sums[above]
                        sums[above] = None if before is None or known is None else before + known
            self._energies = sums
        found = self._energies.get(path, Energy(0.0, 0.0))
        return None if found is None else found.norm_removed

    def unknown(self, names: Iterable[str] | None = None) -> list[str]:
        """Canonical names among ``names`` (default: all) whose counts or norms removed are not known yet."""
        chosen = self.state.tensors if names is None else [self.structure.canonical.get(n, n) for n in names]
        return [n for n in dict.fromkeys(chosen) if not measured(self.state.tensors[n])]


def count_all(state: ModelState, names: Iterable[str], progress: ProgressCallback | None = None,
              cancel: CancelToken | None = None, norms: bool = True) -> None:
    """Count the zeros (and NaN/Inf) and, with ``norms``, measure the norm removed of the tensors ``names`` of
    ``state`` that are not known yet (read-only)."""
    done = measured if norms else (lambda ts: ts.scanned is not None)
    todo = [n for n in dict.fromkeys(names) if not done(state.tensors[n])]
    for index, name in enumerate(todo):
        check(cancel)
        report(progress, index / max(len(todo), 1), f"counting zeros of {name}")
        if norms:
            measure(state.tensors[name], cancel)
        else:
            state.tensors[name].scan(cancel)
    report(progress, 1.0, "counted")
