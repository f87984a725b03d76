"""Fast unstructured pruning (L1 and random) with the masks ``torch.nn.utils.prune`` would compute.

torch finds the smallest ``|w|`` (or the largest random draws) with ``torch.topk`` on one 1-D tensor — single-
threaded, sorting the k values it returns — and ``global_unstructured`` first concatenates every weight and every
mask. Here the exact k-th key is found by radix selection over bit patterns, streaming over the tensors in chunks:
a histogram of the top 16 bits names the bin holding the k-th key, each further pass narrows that bin by 16 bits
until the threshold is exact, and a last pass writes the masks (1 bit per entry). Nothing is concatenated.

- L1: the key of an entry is the bit pattern of ``|w|`` (it orders like the value; NaN above +Inf, as torch's
  ``topk``); the k smallest are pruned.
- Random: torch draws ``rand_like`` over the candidates (in model order, concatenated for global pruning) and prunes
  the k largest draws. The draws are made again, chunk by chunk, from the generator state at the start on every pass
  (on the CPU ``rand(a)`` then ``rand(b)`` gives the same numbers as ``rand(a + b)``), and the generator is left
  where torch leaves it. On other devices torch's own path runs.

Only candidates count: entries whose current mask is 1. The masks equal torch's wherever no other candidate has
exactly the threshold key; among tied entries (``-0.0`` and ``0.0`` tie, so do all NaNs, and random draws of the
same value) torch's ``topk`` prunes an unspecified subset, this module the first ones in order: the same number.

Set :data:`ENABLED` to False to send everything through torch (the parity tests compare both ways).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce

import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core.bitmask import BitMask
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.radix import KEYS, Entry, Selection, count_to_prune, one_thread_per_op, scratch

__all__ = ["ENABLED", "MIN_NUMEL", "Entry", "count_to_prune", "global_l1_unstructured", "l1_masks", "random_masks",
           "supports"]

ENABLED = True
"""False: every tensor goes through ``torch.nn.utils.prune`` itself."""
MIN_NUMEL = 1 << 16
"""Below this many entries torch's own path is as fast (and gives torch's exact tie choices)."""


def supports(tensors: Sequence[torch.Tensor], random: bool = False) -> bool:
    """Whether the fast path takes these tensors (floating dtypes, one device, enough entries; random on the CPU)."""
    if not ENABLED or not tensors:
        return False
    if any(t.dtype not in KEYS for t in tensors) or len({t.device for t in tensors}) > 1:
        return False
    if random and tensors[0].device.type != "cpu":
        return False
    return sum(t.numel() for t in tensors) >= MIN_NUMEL


def _promoted(dtypes: Sequence[torch.dtype]) -> torch.dtype:
    return reduce(torch.promote_types, dtypes)


# -- the two selections ------------------------------------------------------------------------------------------
def l1_masks(entries: Sequence[Entry], amount: float | int, progress: ProgressCallback | None = None,
             cancel: CancelToken | None = None, tally: list[tuple[int | None, int] | None] | None = None
             ) -> list[BitMask]:
    """New masks pruning the ``amount`` candidates of smallest ``|value|`` over all ``entries`` together (one
    entry: ``l1_unstructured``; several: ``global_unstructured`` with ``L1Unstructured``). ``tally``, when given,
    receives each entry's (zeros, NaN/Inf) as far as the selection's own reading tells (``Selection.tally``)."""
    prune.L1Unstructured(amount)  # torch validates the amount when it builds the method
    dtype = _promoted([e.values.dtype for e in entries])

    def chunk(entry: Entry, start: int, stop: int) -> torch.Tensor:
        part = entry.values.reshape(-1)[start:stop]
        return part if part.dtype == dtype else part.to(dtype)

    with one_thread_per_op():  # every small op, the bookkeeping included (each would wait at a barrier under load)
        selection = Selection(entries, dtype, chunk, lambda: None, False, progress, cancel, parallel=True)
        masks = selection.masks(amount)
        if tally is not None:
            tally[:] = selection.tally()
    return masks


def random_masks(entries: Sequence[Entry], amount: float | int, progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> list[BitMask]:
    """New masks pruning ``amount`` random candidates over all ``entries`` together, drawing from torch's default
    CPU generator exactly what ``random_unstructured`` / ``global_unstructured`` would draw."""
    prune.RandomUnstructured(amount)
    dtype = _promoted([e.values.dtype for e in entries])
    start_state = torch.get_rng_state()
    zeros = scratch(torch.device("cpu"))

    def begin_pass() -> None:
        torch.set_rng_state(start_state)

    def chunk(entry: Entry, start: int, stop: int) -> torch.Tensor:
        cand = entry.candidates(start, stop)
        if cand is None:
            return torch.rand(stop - start, dtype=dtype)
        draws = zeros.get("draws", dtype, stop - start).zero_()
        draws[cand] = torch.rand(int(cand.sum()), dtype=dtype)
        return draws

    with one_thread_per_op():
        masks = Selection(entries, dtype, chunk, begin_pass, True, progress, cancel).masks(amount)
    before = sum(e.numel if e.mask is None else e.mask.kept for e in entries)
    if sum(m.kept for m in masks) == before:  # nothing to prune: torch draws nothing
        torch.set_rng_state(start_state)
    return masks


# -- torch's form, for modules used directly -------------------------------------------------------------------------
def _attach(module: nn.Module, name: str, method: prune.BasePruningMethod,
            new_mask: Callable[[torch.Tensor | None], torch.Tensor]) -> prune.BasePruningMethod:
    """``BasePruningMethod.apply`` step for step, with the mask given: ``new_mask(default_mask)`` gets the previous
    mask (None on first pruning) and returns the buffer to register."""
    method._tensor_name = name
    found = [(key, hook) for key, hook in module._forward_pre_hooks.items()
             if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == name]
    for key, _ in found:
        del module._forward_pre_hooks[key]
    hook = method
    if found:
        old = found[0][1]
        if isinstance(old, prune.PruningContainer):
            old.add_pruning_method(method)
            hook = old
        else:
            hook = prune.PruningContainer(old)
            hook.add_pruning_method(method)
    orig = getattr(module, name)
    default: torch.Tensor | None = None
    if not isinstance(hook, prune.PruningContainer):
        module.register_parameter(name + "_orig", orig)
        del module._parameters[name]
    else:
        default = getattr(module, name + "_mask").detach()
    module.register_buffer(name + "_mask", new_mask(default))
    setattr(module, name, hook.apply_mask(module))
    module.register_forward_pre_hook(hook)
    return hook


def _given(buffer: torch.Tensor) -> Callable[[torch.Tensor | None], torch.Tensor]:
    return lambda _default: buffer


def _entry(module: nn.Module, name: str) -> Entry:
    mask = getattr(module, name + "_mask", None)
    return Entry(getattr(module, name).detach(), None if mask is None else BitMask.from_tensor(mask, name))


def l1_unstructured(module: nn.Module, name: str, amount: float | int) -> None:
    """``prune.l1_unstructured(module, name, amount)`` on a module: the same parameters, buffer, hook and mask."""
    scores = getattr(module, name)
    mask = l1_masks([_entry(module, name)], amount)[0]
    _attach(module, name, prune.L1Unstructured(amount), lambda _default: mask.as_dtype(scores.dtype, scores.device))


def global_l1_unstructured(pairs: Sequence[tuple[nn.Module, str]], amount: float | int,
                           progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> None:
    """``prune.global_unstructured(pairs, prune.L1Unstructured, amount=amount)`` on modules, without concatenating.

    Each tensor gets a ``CustomFromMask`` hook with its part of the global mask, as ``custom_from_mask`` gives it.
    The modules change only after every mask has been computed, so a cancel leaves them untouched."""
    entries = [_entry(module, name) for module, name in pairs]
    masks = l1_masks(entries, amount, progress, cancel)
    check(cancel)
    dtype = _promoted([e.values.dtype for e in entries])
    for (module, name), mask, entry in zip(pairs, masks, entries, strict=True):
        part = mask.as_dtype(dtype, entry.values.device)
        buffer = mask.as_dtype(entry.values.dtype, entry.values.device)
        _attach(module, name, prune.CustomFromMask(part), _given(buffer))
    report(progress, 1.0, "done")
