"""Streaming radix selection of the k smallest keys over several tensors, chunk by chunk (the engine of
:mod:`sparsegui.core.fastprune`).

A key is an entry's bit pattern with the sign cleared (it orders like ``|value|``; NaN above +Inf). The first pass
histograms the top 16 bits, naming the bin that holds the k-th key; each further pass narrows it by 16 bits until the
threshold is exact; a last pass writes the masks, 1 bit per entry. Nothing is concatenated.

On the CPU the chunks run side by side on a pool of threads, each op on one thread (a small op split across threads
waits at a barrier for every thread, and one descheduled by another busy program stalls them all). The entries are
cut into segments, contiguous runs of chunks; the last histogram pass also counts each segment's candidates equal to
the threshold, so each segment knows beforehand how many of those it prunes (the first ones in order) and the
segments are written side by side too.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from sparsegui.core.bitmask import CHUNK, BitMask, BitWriter
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report

# dtype → (integer view, mask clearing the sign bit, shifts of the successive 16-bit radix digits)
KEYS: dict[torch.dtype, tuple[torch.dtype, int, tuple[int, ...]]] = {
    torch.float16: (torch.int16, 0x7FFF, (0,)),
    torch.bfloat16: (torch.int16, 0x7FFF, (0,)),
    torch.float32: (torch.int32, 0x7FFF_FFFF, (16, 0)),
    torch.float64: (torch.int64, 0x7FFF_FFFF_FFFF_FFFF, (48, 32, 16, 0)),
}
_BINS = 1 << 16
_T = TypeVar("_T")


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


def _spans(start: int, stop: int) -> Iterator[tuple[int, int]]:
    for first in range(start, stop, CHUNK):
        yield first, min(first + CHUNK, stop)


@dataclass(frozen=True)
class _Segment:
    """A contiguous run of whole chunks of one entry."""

    index: int
    start: int
    stop: int


def _segments(entries: Sequence[Entry], threads: int) -> list[_Segment]:
    """Each entry whole, or, when there are few entries to share among the threads, cut into ``threads`` runs."""
    pieces = threads if threads > 1 and len(entries) < 2 * threads else 1
    step = math.lcm(CHUNK, 8)  # a segment starts on a byte of the packed mask: the pieces join as they are
    out: list[_Segment] = []
    for index, entry in enumerate(entries):
        per = max(1, math.ceil(entry.numel / pieces / step)) * step
        out.extend(_Segment(index, start, min(start + per, entry.numel)) for start in range(0, entry.numel, per))
        if entry.numel == 0:
            out.append(_Segment(index, 0, 0))
    return out


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


def scratch(device: torch.device) -> _Buffers:
    """This thread's scratch tensors on ``device``."""
    store: dict[torch.device, _Buffers] = _LOCAL.__dict__.setdefault("buffers", {})
    if device not in store:
        store[device] = _Buffers(device)
    return store[device]


def workers() -> int:
    """Threads for the streaming passes: one per core this process may use (at most 8)."""
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(8, os.cpu_count() or 1))


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of ``threads`` selection threads, made once: starting and joining threads for every pass
    costs tens of milliseconds when another program keeps the cores busy (each waits for a time slice)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="sparsegui-select")
        return pool


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


def _compare(op: str, keys: torch.Tensor, threshold: int, out: torch.Tensor) -> torch.Tensor:
    """``out = keys <op> threshold`` (op: ``greater``, ``greater_equal``, ``equal``); numpy's comparisons on the CPU
    (several times faster than torch's into a bool tensor there, and they release the GIL as well)."""
    if keys.device.type == "cpu":
        array = keys.numpy()
        getattr(np, op)(array, array.dtype.type(threshold), out=out.numpy())
    else:
        {"greater": torch.gt, "greater_equal": torch.ge, "equal": torch.eq}[op](keys, threshold, out=out)
    return out


def _inside(keys: torch.Tensor, scratch_keys: torch.Tensor, scratch_bool: torch.Tensor, previous: int, prefix: int,
            candidates: torch.Tensor | None) -> np.ndarray:
    """The keys (on the CPU) of candidates whose ``key >> previous == prefix``, compacted into a new array."""
    inside = _compare("equal", torch.bitwise_right_shift(keys, previous, out=scratch_keys), prefix, scratch_bool)
    if candidates is not None:
        inside &= candidates
    return keys.numpy()[inside.numpy()]


def mantissa(dtype: torch.dtype) -> int:
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


class Selection:
    """The k smallest keys among the candidates of several entries, and the masks that prune them.

    ``chunk(entry, start, stop)`` gives the chunk's values in ``dtype``; ``invert`` makes the keys select the largest
    values instead (random pruning). Each pass histograms the next 16-bit digit of the keys that share the prefix
    found so far (non-candidates and keys outside the prefix go to a spare bin); after the last digit the threshold
    key is exact and one more pass writes the masks. ``parallel``: chunks may be read side by side (each chunk
    stands alone; random draws must come in order).
    """

    def __init__(self, entries: Sequence[Entry], dtype: torch.dtype,
                 chunk: Callable[[Entry, int, int], torch.Tensor],
                 begin_pass: Callable[[], None], invert: bool, progress: ProgressCallback | None,
                 cancel: CancelToken | None, parallel: bool = False) -> None:
        self.entries = entries
        self.dtype = dtype
        self.itype, self.sign_off, self.shifts = KEYS[dtype]
        self.ktype = torch.int64 if self.itype == torch.int64 else torch.int32
        self.chunk = chunk
        self.begin_pass = begin_pass
        self.invert = invert
        self.progress = progress
        self.cancel = cancel
        self.device = entries[0].values.device
        self.threads = workers() if parallel and self.device.type == "cpu" else 1
        self.segments = _segments(entries, self.threads)
        self.passes = 0
        self.expected = len(self.shifts) + 1
        self._chunks = sum(math.ceil(e.numel / CHUNK) for e in entries) or 1
        self._read = 0
        self._lock = threading.Lock()
        # per entry, from the first pass: keys in the lowest digit (zeros among them) and NaN/±Inf (tally())
        self.first: list[list[int] | None] = [None if invert else [0, 0] for _ in entries]

    def _advance(self, what: str) -> None:
        """One more chunk read in this pass (from any thread): cancel is checked, progress reported now and then."""
        check(self.cancel)
        with self._lock:
            self._read += 1
            read = self._read
        if read % 64 == 0 or read == self._chunks:
            report(self.progress, 0.95 * (self.passes + read / self._chunks) / self.expected, what)

    def _keys(self, chunk: torch.Tensor, buffers: _Buffers) -> torch.Tensor:
        keys = buffers.get("keys", self.itype, chunk.numel())
        torch.bitwise_and(chunk.view(self.itype), self.sign_off, out=keys)
        if self.invert:
            torch.sub(self.sign_off, keys, out=keys)
        return keys

    def _run(self, work: Callable[[int], _T]) -> list[_T]:
        """``work(i)`` for every segment ``i``, side by side when there are threads for it; results in order."""
        self.begin_pass()
        self._read = 0
        positions = range(len(self.segments))
        if self.threads > 1 and len(self.segments) > 1:
            # the biggest first: the pass ends on small pieces, so no thread waits long for the last one
            order = sorted(positions, key=lambda i: self.segments[i].start - self.segments[i].stop)
            done = dict(zip(order, _pool(self.threads).map(work, order), strict=True))
            results = [done[position] for position in positions]
        else:
            results = [work(position) for position in positions]
        self.passes += 1
        return results

    def _histogram(self, previous: int, prefix: int, shift: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Counts of the 16-bit digit at ``shift`` among candidates whose ``key >> previous == prefix``: in all, and
        each segment's own (after the last pass they say how many candidates of each segment tie)."""
        first_pass = previous < 0
        infinite = self._infinite_digit()

        def one(position: int) -> tuple[torch.Tensor, tuple[int, int] | None]:
            segment = self.segments[position]
            buffers = scratch(self.device)  # this thread's own
            entry = self.entries[segment.index]
            hist = buffers.get("hist", torch.int64, _BINS + 1).zero_()
            before = (buffers.get("before", torch.int64, _BINS + 1).zero_()
                      if first_pass and self.first[segment.index] is not None else None)
            for start, stop in _spans(segment.start, segment.stop):
                self._advance("finding the threshold")
                n = stop - start
                keys = self._keys(self.chunk(entry, start, stop), buffers)
                digits = buffers.get("digits", self.ktype, n)
                cand = entry.candidates(start, stop)
                if not first_pass and keys.device.type == "cpu":
                    # few keys share the prefix: pick them out (numpy's ops release the GIL) and count only those
                    inside = _inside(keys, digits, buffers.get("spare", torch.bool, n), previous, prefix, cand)
                    picked = np.bitwise_and(np.right_shift(inside, shift), 0xFFFF)
                    hist += torch.bincount(torch.from_numpy(picked), minlength=_BINS + 1)
                    continue
                if not first_pass:
                    spare = buffers.get("spare", torch.bool, n)
                    torch.ne(torch.bitwise_right_shift(keys, previous, out=digits), prefix, out=spare)
                    torch.bitwise_right_shift(keys, shift, out=digits).bitwise_and_(0xFFFF)
                    digits.masked_fill_(spare, _BINS)
                elif shift or cand is not None:
                    torch.bitwise_right_shift(keys, shift, out=digits)
                else:  # 16-bit keys are their own digits (bincount takes them as they are)
                    digits = keys
                counts = torch.bincount(digits, minlength=_BINS + 1)
                if before is not None:  # every key of the entry, before candidates: tally()
                    before += counts
                if cand is not None:
                    digits.masked_fill_(cand.logical_not(), _BINS)
                    counts = torch.bincount(digits, minlength=_BINS + 1)
                hist += counts
            # kept until the pass ends, one per segment: 4 bytes a bin when the counts fit
            kept = hist.to(torch.int32) if segment.stop - segment.start < 2**31 else hist.clone()
            tally = None if before is None else (int(before[0]), int(before[infinite:_BINS].sum()))
            return kept, tally

        results = self._run(one)
        total = torch.zeros(_BINS + 1, dtype=torch.int64, device=self.device)
        for segment, (hist, tally) in zip(self.segments, results, strict=True):
            total += hist
            first = self.first[segment.index]
            if tally is not None and first is not None:
                first[0] += tally[0]
                first[1] += tally[1]
        return total[:_BINS], [hist for hist, _ in results]

    def _infinite_digit(self) -> int:
        """The first pass's digit of +Inf's key: it and the digits above hold NaN and ±Inf."""
        return (self.sign_off ^ mantissa(self.dtype)) >> self.shifts[0]

    def tally(self) -> list[tuple[int | None, int] | None]:
        """Per entry, (zeros, NaN/±Inf) of its values read off the first pass's histogram: NaN/Inf exactly (their
        keys start a digit), zeros exactly for 16-bit floats and, for wider ones, known to be 0 when the lowest
        digit is empty (None otherwise: a count would need another pass). None for an entry not histogrammed."""
        out: list[tuple[int | None, int] | None] = []
        for first in self.first:
            if first is None:
                out.append(None)
                continue
            low, nonfinite = first
            out.append((low if self.shifts[0] == 0 else (0 if low == 0 else None), nonfinite))
        return out

    def masks(self, amount: float | int) -> list[BitMask]:
        """Each entry's new mask: the old one with the k selected candidates pruned."""
        hist, per_segment = self._histogram(-1, 0, self.shifts[0])
        total = int(hist.sum())
        k = count_to_prune(amount, total)
        if k in (0, total):
            return self._write(-1 if k == 0 else self.sign_off, [0] * len(self.segments), [0] * len(self.segments))
        prefix, need, _ = _pick(hist, k)
        digit, previous = prefix, self.shifts[0]
        for shift in self.shifts[1:]:
            hist, per_segment = self._histogram(previous, prefix, shift)
            digit, need, _ = _pick(hist, need)
            prefix, previous = (prefix << (previous - shift)) | digit, shift
        tied = [int(h[digit]) for h in per_segment]
        shares = []
        for count_here in tied:  # the first `need` tied candidates in order are pruned
            shares.append(min(need, count_here))
            need -= shares[-1]
        return self._write(prefix, tied, shares)

    def _write(self, threshold: int, tied: list[int], shares: list[int]) -> list[BitMask]:
        """Keep the candidates whose key is above ``threshold``; of the ``tied[i]`` candidates of segment ``i`` equal
        to it, prune the first ``shares[i]`` and keep the rest."""

        def one(position: int) -> tuple[np.ndarray, int]:
            segment = self.segments[position]
            buffers = scratch(self.device)
            entry = self.entries[segment.index]
            writer = BitWriter((segment.stop - segment.start,))
            remaining = shares[position]
            # all of this segment's tied candidates pruned (or none tied): keep above; none pruned: keep from it on
            op = "greater" if remaining == tied[position] else "greater_equal" if remaining == 0 else None
            for start, stop in _spans(segment.start, segment.stop):
                self._advance("writing masks")
                n = stop - start
                keys = self._keys(self.chunk(entry, start, stop), buffers)
                keep = _compare(op or "greater", keys, threshold, buffers.get("keep", torch.bool, n))
                cand = entry.candidates(start, stop)
                if op is None:
                    equal = _compare("equal", keys, threshold, buffers.get("equal", torch.bool, n))
                    if cand is not None:
                        equal &= cand
                    remaining = _keep_ties(keep, equal, remaining)
                if cand is not None:
                    keep &= cand
                writer.append(keep)
            mask = writer.finish()
            return mask.bits(), mask.kept

        parts = self._run(one)
        pieces: list[list[tuple[np.ndarray, int]]] = [[] for _ in self.entries]
        for segment, part in zip(self.segments, parts, strict=True):
            pieces[segment.index].append(part)
        masks = []
        for entry, own in zip(self.entries, pieces, strict=True):
            bits = own[0][0] if len(own) == 1 else np.concatenate([b for b, _ in own])
            masks.append(BitMask(bits, tuple(entry.values.shape), entry.numel - sum(kept for _, kept in own)))
        return masks
