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

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import reduce

import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core.bitmask import BitMask, BitWriter
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report

ENABLED = True
"""False: every tensor goes through ``torch.nn.utils.prune`` itself."""
MIN_NUMEL = 1 << 16
"""Below this many entries torch's own path is as fast (and gives torch's exact tie choices)."""
CHUNK = 1 << 20
"""Entries per streaming step: small enough for the CPU caches, large enough to amortise each call."""

# dtype → (integer view, mask clearing the sign bit, shifts of the successive 16-bit radix digits)
_KEYS: dict[torch.dtype, tuple[torch.dtype, int, tuple[int, ...]]] = {
    torch.float16: (torch.int16, 0x7FFF, (0,)),
    torch.bfloat16: (torch.int16, 0x7FFF, (0,)),
    torch.float32: (torch.int32, 0x7FFF_FFFF, (16, 0)),
    torch.float64: (torch.int64, 0x7FFF_FFFF_FFFF_FFFF, (48, 32, 16, 0)),
}
_BINS = 1 << 16


def supports(tensors: Sequence[torch.Tensor], random: bool = False) -> bool:
    """Whether the fast path takes these tensors (floating dtypes, one device, enough entries; random on the CPU)."""
    if not ENABLED or not tensors:
        return False
    if any(t.dtype not in _KEYS for t in tensors) or len({t.device for t in tensors}) > 1:
        return False
    if random and tensors[0].device.type != "cpu":
        return False
    return sum(t.numel() for t in tensors) >= MIN_NUMEL


@dataclass
class Entry:
    """One tensor taking part: its values (the importance scores) and its current mask (None: all candidates)."""

    values: torch.Tensor
    mask: BitMask | None

    @property
    def numel(self) -> int:
        return self.values.numel()

    def candidates(self, start: int, stop: int) -> torch.Tensor | None:
        if self.mask is None:
            return None
        keep = torch.from_numpy(self.mask.chunk(start, stop))
        return keep if self.values.device.type == "cpu" else keep.to(self.values.device)


def _spans(numel: int) -> Iterator[tuple[int, int]]:
    for start in range(0, numel, CHUNK):
        yield start, min(start + CHUNK, numel)


class _Buffers:
    """Scratch tensors reused chunk after chunk and call after call (per thread and device): fresh multi-megabyte
    allocations cost a page fault per page."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._store: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, name: str, dtype: torch.dtype, n: int) -> torch.Tensor:
        buf = self._store.get((name, dtype))
        if buf is None or buf.numel() < n:
            buf = torch.empty(max(n, min(CHUNK, 1 << 16)), dtype=dtype, device=self.device)
            self._store[(name, dtype)] = buf
        return buf[:n]


_LOCAL = threading.local()


def workers() -> int:
    """Threads for the streaming passes: one per core this process may use (at most 8)."""
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(8, os.cpu_count() or 1))


@contextmanager
def one_thread_per_op() -> Iterator[None]:
    """Each small op on one thread: chunk-sized ops split across threads wait at a barrier for every thread, and a
    descheduled one (another program busy on the machine) stalls them all; the passes run chunks side by side
    instead."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _scratch(device: torch.device) -> _Buffers:
    store: dict[torch.device, _Buffers] = _LOCAL.__dict__.setdefault("buffers", {})
    if device not in store:
        store[device] = _Buffers(device)
    return store[device]


class _Selection:
    """Streaming radix selection of the k smallest keys among the candidates of several tensors.

    ``chunk(entry, start, stop)`` gives the chunk's values in ``dtype``; ``invert`` makes the keys select the largest
    values instead (random pruning). Each pass histograms the next 16-bit digit of the keys that share the prefix
    found so far (non-candidates and keys outside the prefix go to a spare bin); after the last digit the threshold
    key is exact and one more pass writes the masks.
    """

    def __init__(self, entries: Sequence[Entry], dtype: torch.dtype,
                 chunk: Callable[[Entry, int, int], torch.Tensor],
                 begin_pass: Callable[[], None], invert: bool, progress: ProgressCallback | None,
                 cancel: CancelToken | None, parallel: bool = False) -> None:
        self.entries = entries
        self.dtype = dtype
        self.itype, self.sign_off, self.shifts = _KEYS[dtype]
        self.ktype = torch.int64 if self.itype == torch.int64 else torch.int32
        self.chunk = chunk
        self.begin_pass = begin_pass
        self.invert = invert
        self.progress = progress
        self.cancel = cancel
        self.device = entries[0].values.device
        self.passes = 0
        self.expected = len(self.shifts) + 1
        self.done = 0.0
        self.first: list[torch.Tensor | None] = [
            None if invert else torch.zeros(_BINS + 1, dtype=torch.int64, device=self.device) for _ in entries]
        # chunks side by side on the CPU when each chunk stands alone (L1; random draws must come in order)
        self.threads = workers() if parallel and self.device.type == "cpu" else 1

    def _tick(self, index: int, what: str) -> None:
        check(self.cancel)
        self.done = max(self.done, 0.95 * (self.passes + index / len(self.entries)) / self.expected)
        report(self.progress, self.done, f"{what} ({index + 1}/{len(self.entries)} tensors)")

    def _keys(self, chunk: torch.Tensor, buffers: _Buffers | None = None) -> torch.Tensor:
        keys = (buffers or _scratch(self.device)).get("keys", self.ktype, chunk.numel())
        torch.bitwise_and(chunk.view(self.itype), self.sign_off, out=keys)
        if self.invert:
            torch.sub(self.sign_off, keys, out=keys)
        return keys

    def _histogram(self, previous: int, prefix: int, shift: int) -> torch.Tensor:
        """Counts of the 16-bit digit at ``shift`` among candidates whose ``key >> previous == prefix``."""
        self.begin_pass()
        spans = [(index, start, stop) for index, entry in enumerate(self.entries)
                 for start, stop in _spans(entry.numel)]
        if self.threads > 1 and len(spans) > 1:
            parts = [spans[i :: self.threads] for i in range(self.threads)]
            with ThreadPoolExecutor(self.threads, thread_name_prefix="sparsegui-select") as pool:
                results = list(pool.map(lambda part: self._histogram_part(part, previous, prefix, shift), parts))
            hist = sum((r[0] for r in results), torch.zeros(_BINS + 1, dtype=torch.int64))
            for _, firsts in results:
                for index, counts in firsts.items():
                    first = self.first[index]
                    if first is not None:
                        first += counts
        else:
            hist, firsts = self._histogram_part(spans, previous, prefix, shift, tick=True)
            for index, counts in firsts.items():
                first = self.first[index]
                if first is not None:
                    first += counts
        self.passes += 1
        return hist[:_BINS]

    def _histogram_part(self, spans: Sequence[tuple[int, int, int]], previous: int, prefix: int, shift: int,
                        tick: bool = False) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The histogram of some chunks, and for the first pass each entry's histogram before candidates."""
        buffers = _scratch(self.device)  # this thread's own scratch
        hist = torch.zeros(_BINS + 1, dtype=torch.int64, device=self.device)
        firsts: dict[int, torch.Tensor] = {}
        last = -1
        for index, start, stop in spans:
            entry = self.entries[index]
            if tick and index != last:
                self._tick(index, "finding the threshold")
                last = index
            else:
                check(self.cancel)
            n = stop - start
            keys = self._keys(self.chunk(entry, start, stop), buffers)
            digits = buffers.get("digits", self.ktype, n)
            spare = buffers.get("spare", torch.bool, n)
            if previous >= 0:
                torch.ne(torch.bitwise_right_shift(keys, previous, out=digits), prefix, out=spare)
                torch.bitwise_right_shift(keys, shift, out=digits).bitwise_and_(0xFFFF)
                digits.masked_fill_(spare, _BINS)
            else:
                torch.bitwise_right_shift(keys, shift, out=digits)
            if previous < 0 and self.first[index] is not None:  # every entry's keys, before candidates: tally()
                counts = torch.bincount(digits, minlength=_BINS + 1)
                firsts[index] = firsts[index] + counts if index in firsts else counts
            cand = entry.candidates(start, stop)
            if cand is not None:
                digits.masked_fill_(cand.logical_not(), _BINS)
            hist += torch.bincount(digits, minlength=_BINS + 1)
        return hist, firsts

    def tally(self) -> list[tuple[int | None, int] | None]:
        """Per entry, (zeros, NaN/±Inf) of its values read off the first pass's histogram: NaN/Inf exactly (their
        keys start a digit), zeros exactly for 16-bit floats and, for wider ones, known to be 0 when the lowest
        digit is empty (None otherwise: a count would need another pass). None for an entry not histogrammed."""
        out: list[tuple[int | None, int] | None] = []
        shift = self.shifts[0]
        infinite = (self.sign_off ^ _mantissa(self.dtype)) >> shift
        for hist in self.first:
            if hist is None:
                out.append(None)
                continue
            low = int(hist[0])
            zeros = low if shift == 0 else (0 if low == 0 else None)
            out.append((zeros, int(hist[infinite:_BINS].sum())))
        return out

    def masks(self, amount: float | int) -> list[BitMask]:
        """Each entry's new mask: the old one with the k selected candidates pruned."""
        hist = self._histogram(-1, 0, self.shifts[0])
        total = int(hist.sum())
        k = count_to_prune(amount, total)
        if k in (0, total):
            return self._write(lambda chunk: torch.full((chunk.numel(),), k == 0, dtype=torch.bool,
                                                        device=self.device), 0)
        prefix, need, count = _pick(hist, k)
        previous = self.shifts[0]
        for shift in self.shifts[1:]:
            digit, need, count = _pick(self._histogram(previous, prefix, shift), need)
            prefix, previous = (prefix << (previous - shift)) | digit, shift
        return self._write_at(prefix, need, count)

    def _write_at(self, threshold: int, need: int, count: int) -> list[BitMask]:
        """Keep keys above ``threshold``; of the ``count`` candidates equal to it, prune the first ``need``."""
        fast_compare = not self.invert and threshold < self.sign_off ^ _mantissa(self.dtype)  # below +Inf's key
        value = torch.tensor(threshold, dtype=self.itype).view(self.dtype).to(self.device)

        def decide(chunk: torch.Tensor) -> torch.Tensor:
            buffers = _scratch(self.device)  # this thread's own
            keep = buffers.get("keep", torch.bool, chunk.numel())
            if fast_compare:  # |w| > t, NaN included (it ranks above every number, as in torch's topk)
                mags = torch.abs(chunk, out=buffers.get("mags", self.dtype, chunk.numel()))
                torch.le(mags, value, out=keep).logical_not_()
            else:
                torch.gt(self._keys(chunk), threshold, out=keep)
            return keep

        equal = (lambda chunk: self._keys(chunk) == threshold) if need < count else None
        return self._write(decide, need, equal)

    def _write(self, decide: Callable[[torch.Tensor], torch.Tensor], ties: int,
               equal: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[BitMask]:
        if equal is None and self.threads > 1 and len(self.entries) > 1:  # no ties to share out: entries apart
            self.begin_pass()

            def one(index: int) -> BitMask:
                check(self.cancel)
                entry = self.entries[index]
                writer = BitWriter(tuple(entry.values.shape))
                for start, stop in _spans(entry.numel):
                    keep = decide(self.chunk(entry, start, stop))
                    cand = entry.candidates(start, stop)
                    if cand is not None:
                        keep &= cand
                    writer.append(keep)
                return writer.finish()

            with ThreadPoolExecutor(self.threads, thread_name_prefix="sparsegui-select") as pool:
                masks = list(pool.map(one, range(len(self.entries))))
            self.passes += 1
            return masks
        masks = []
        remaining = ties
        self.begin_pass()
        for index, entry in enumerate(self.entries):
            self._tick(index, "writing masks")
            writer = BitWriter(tuple(entry.values.shape))
            for start, stop in _spans(entry.numel):
                chunk = self.chunk(entry, start, stop)
                keep = decide(chunk)
                cand = entry.candidates(start, stop)
                if equal is not None:  # some tied entries are kept: prune the first `remaining`, keep the rest
                    tied = equal(chunk)
                    if cand is not None:
                        tied &= cand
                    remaining = _keep_ties(keep, tied, remaining)
                if cand is not None:
                    keep &= cand
                writer.append(keep)
            masks.append(writer.finish())
        self.passes += 1
        return masks


def _mantissa(dtype: torch.dtype) -> int:
    """The mantissa bits of ``dtype``'s bit pattern: the key of +Inf is ``sign_off ^ mantissa``."""
    return {torch.float16: 0x3FF, torch.bfloat16: 0x7F, torch.float32: 0x7FFFFF, torch.float64: (1 << 52) - 1}[dtype]


def _pick(hist: torch.Tensor, need: int) -> tuple[int, int, int]:
    """The bin holding the ``need``-th smallest key, the rank within it, and how many keys it holds."""
    cumulative = hist.cumsum(0)
    digit = int((cumulative < need).sum())
    count = int(hist[digit])
    return digit, need - (int(cumulative[digit]) - count), count


def _keep_ties(keep: torch.Tensor, equal: torch.Tensor, ties: int) -> int:
    """Of the entries ``equal`` to the threshold (pruned so far), keep all but the first ``ties`` still to prune;
    returns how many remain to prune after this chunk."""
    if ties == 0:
        keep |= equal
        return 0
    count = int(equal.sum())
    if count <= ties:
        return ties - count
    keep |= equal & (equal.cumsum(0) > ties)
    return 0


def count_to_prune(amount: float | int, size: int) -> int:
    """``prune._compute_nparams_toprune`` and ``_validate_pruning_amount``, with torch's error."""
    k = amount if isinstance(amount, int) else round(amount * size)
    if k > size:
        raise ValueError(f"amount={k} should be smaller than the number of parameters to prune={size}")
    return k


def _promoted(dtypes: Sequence[torch.dtype]) -> torch.dtype:
    return reduce(torch.promote_types, dtypes)


# -- the two selections ------------------------------------------------------------------------------------------
def l1_masks(entries: Sequence[Entry], amount: float | int, progress: ProgressCallback | None = None,
             cancel: CancelToken | None = None, tally: list[tuple[int | None, int] | None] | None = None
             ) -> list[BitMask]:
    """New masks pruning the ``amount`` candidates of smallest ``|value|`` over all ``entries`` together (one
    entry: ``l1_unstructured``; several: ``global_unstructured`` with ``L1Unstructured``). ``tally``, when given,
    receives each entry's (zeros, NaN/Inf) as far as the selection's own reading tells (:meth:`_Selection.tally`)."""
    prune.L1Unstructured(amount)  # torch validates the amount when it builds the method
    dtype = _promoted([e.values.dtype for e in entries])

    def chunk(entry: Entry, start: int, stop: int) -> torch.Tensor:
        part = entry.values.reshape(-1)[start:stop]
        return part if part.dtype == dtype else part.to(dtype)

    selection = _Selection(entries, dtype, chunk, lambda: None, False, progress, cancel, parallel=True)
    with one_thread_per_op():
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
    zeros = _scratch(torch.device("cpu"))

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
        masks = _Selection(entries, dtype, chunk, begin_pass, True, progress, cancel).masks(amount)
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
