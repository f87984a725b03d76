"""Fast L1 (magnitude) pruning that leaves a model exactly as ``torch.nn.utils.prune`` would.

torch finds the smallest ``|w|`` with ``torch.topk`` on one 1-D tensor (single-threaded, sorting the k values it
returns), and ``global_unstructured`` first concatenates every weight and every mask. Here the exact k-th magnitude
is found by radix selection over the bit patterns of ``|w|`` — the bit pattern of a non-negative float orders like
its value, with NaN above +Inf as in torch's ``topk`` — streaming over the tensors in chunks: a histogram of the top
16 bits names the bin holding the k-th value, each further pass narrows that bin by 16 bits until the threshold is
exact, and a last pass writes the masks. Nothing is concatenated; memory is the masks plus a few chunk buffers.

The masks equal torch's wherever no other entry has exactly the threshold magnitude. Among entries tied at the
threshold (``-0.0`` and ``0.0`` tie; so do all NaNs) torch's ``topk`` prunes an unspecified subset, this module the
first ones in model order: the same number either way. The model then holds what torch leaves: ``X_orig``, ``X_mask``
(in the same dtype), ``X`` and the same hook — an ``L1Unstructured`` or ``CustomFromMask`` (global), composed into a
``PruningContainer`` when the tensor was pruned before, where only entries whose mask is 1 are candidates.

Set :data:`ENABLED` to False to send everything through torch (the parity tests compare both ways).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce

import torch
from torch import nn
from torch.nn.utils import prune

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


def supports(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether the fast path takes these importance tensors (floating dtypes, one device, enough entries)."""
    if not ENABLED or not tensors:
        return False
    if any(t.dtype not in _KEYS for t in tensors) or len({t.device for t in tensors}) > 1:
        return False
    return sum(t.numel() for t in tensors) >= MIN_NUMEL


@dataclass
class _Entry:
    """One tensor taking part: its importance scores and the mask whose 1-entries are the candidates."""

    scores: torch.Tensor  # flat
    old_mask: torch.Tensor | None  # flat; None: every entry is a candidate
    cand_dtype: torch.dtype  # the dtype the old mask is compared with 1 in (torch's concatenated mask)
    out_dtype: torch.dtype  # the dtype of the mask torch computes

    def candidates(self, start: int, stop: int) -> torch.Tensor | None:
        if self.old_mask is None:
            return None
        return self.old_mask[start:stop].to(self.cand_dtype) == 1

    def fill(self, start: int, stop: int) -> torch.Tensor:
        """What torch's new mask holds where an entry is not a candidate: the old mask, converted."""
        assert self.old_mask is not None
        return self.old_mask[start:stop].to(self.cand_dtype).to(self.out_dtype)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    itype = _KEYS[a.dtype][0]
    return torch.equal(a.contiguous().view(itype), b.contiguous().view(itype))


def _spans(numel: int) -> Iterator[tuple[int, int]]:
    for start in range(0, numel, CHUNK):
        yield start, min(start + CHUNK, numel)


class _Buffers:
    """Scratch tensors reused chunk after chunk and call after call (a few chunks' worth per thread and device):
    fresh multi-megabyte allocations cost a page fault per page."""

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


def _scratch(device: torch.device) -> _Buffers:
    store: dict[torch.device, _Buffers] = _LOCAL.__dict__.setdefault("buffers", {})
    if device not in store:
        store[device] = _Buffers(device)
    return store[device]


class _Selection:
    """Streaming radix selection of the k smallest magnitudes among the candidates of several tensors.

    Keys are the bit patterns of ``|w|`` with the sign bit cleared. Each pass histograms the next 16-bit digit of the
    keys that share the prefix found so far (non-candidates and keys outside the prefix go to a spare bin); after
    the last digit the threshold key is exact and one more pass writes the masks with a float comparison.
    """

    def __init__(self, entries: Sequence[_Entry], dtype: torch.dtype, progress: ProgressCallback | None,
                 cancel: CancelToken | None) -> None:
        self.entries = entries
        self.dtype = dtype
        self.itype, self.sign_off, self.shifts = _KEYS[dtype]
        self.ktype = torch.int64 if self.itype == torch.int64 else torch.int32
        self.progress = progress
        self.cancel = cancel
        self.device = entries[0].scores.device
        self.buffers = _scratch(self.device)
        self.passes = 0  # passes over the data so far
        self.expected = len(self.shifts) + 1
        self.done = 0.0

    def _tick(self, index: int, what: str) -> None:
        check(self.cancel)
        self.done = max(self.done, 0.95 * (self.passes + index / len(self.entries)) / self.expected)
        report(self.progress, self.done, f"{what} ({index + 1}/{len(self.entries)} tensors)")

    def _chunk(self, entry: _Entry, start: int, stop: int) -> torch.Tensor:
        chunk = entry.scores[start:stop]
        return chunk if chunk.dtype == self.dtype else chunk.to(self.dtype)

    def _keys(self, chunk: torch.Tensor) -> torch.Tensor:
        keys = self.buffers.get("keys", self.ktype, chunk.numel())
        return torch.bitwise_and(chunk.view(self.itype), self.sign_off, out=keys)

    def _histogram(self, previous: int, prefix: int, shift: int) -> torch.Tensor:
        """Counts of the 16-bit digit at ``shift`` among candidates whose ``key >> previous == prefix``."""
        hist = torch.zeros(_BINS + 1, dtype=torch.int64, device=self.device)
        for index, entry in enumerate(self.entries):
            self._tick(index, "finding the threshold")
            for start, stop in _spans(entry.scores.numel()):
                n = stop - start
                keys = self._keys(self._chunk(entry, start, stop))
                digits = self.buffers.get("digits", self.ktype, n)
                spare = self.buffers.get("spare", torch.bool, n)
                if previous >= 0:
                    torch.ne(torch.bitwise_right_shift(keys, previous, out=digits), prefix, out=spare)
                    torch.bitwise_right_shift(keys, shift, out=digits).bitwise_and_(0xFFFF)
                    digits.masked_fill_(spare, _BINS)
                else:
                    torch.bitwise_right_shift(keys, shift, out=digits)
                cand = entry.candidates(start, stop)
                if cand is not None:
                    digits.masked_fill_(cand.logical_not_(), _BINS)
                hist += torch.bincount(digits, minlength=_BINS + 1)
        self.passes += 1
        return hist[:_BINS]

    def masks(self, amount: float | int) -> list[torch.Tensor]:
        """Each entry's new mask (flat, in its ``out_dtype``), as torch's ``compute_mask`` would return it."""
        hist = self._histogram(-1, 0, self.shifts[0])
        total = int(hist.sum())
        k = _count(amount, total)
        if k in (0, total):
            return self._write(lambda chunk, keys: torch.full((chunk.numel(),), k == 0, dtype=torch.bool,
                                                              device=self.device))
        prefix, need, count = _pick(hist, k)
        previous = self.shifts[0]
        for shift in self.shifts[1:]:
            digit, need, count = _pick(self._histogram(previous, prefix, shift), need)
            prefix, previous = (prefix << (previous - shift)) | digit, shift
        return self._write_at(prefix, need, count)

    def _write_at(self, threshold: int, need: int, count: int) -> list[torch.Tensor]:
        """Keep keys above ``threshold``; of the ``count`` candidates equal to it, prune the first ``need``."""
        finite = threshold < self.sign_off ^ _mantissa(self.dtype)  # below the key of +Inf
        value = torch.tensor(threshold, dtype=self.itype).view(self.dtype).to(self.device)
        choose = need < count  # some tied entries are kept: prune the first `need` in order, keep the rest
        remaining = [need]

        def decide(chunk: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
            keep = self.buffers.get("keep", torch.bool, chunk.numel())
            if finite:  # |w| > t, NaN included (it ranks above every number, as in torch's topk)
                mags = torch.abs(chunk, out=self.buffers.get("mags", self.dtype, chunk.numel()))
                torch.le(mags, value, out=keep).logical_not_()
            else:
                torch.gt(self._keys(chunk), threshold, out=keep)
            if choose:
                equal = self._keys(chunk) == threshold
                if cand is not None:
                    equal &= cand
                remaining[0] = _keep_ties(keep, equal, remaining[0])
            return keep

        return self._write(decide)

    def _write(self, decide: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]) -> list[torch.Tensor]:
        masks = []
        for index, entry in enumerate(self.entries):
            self._tick(index, "writing masks")
            out = torch.empty(entry.scores.numel(), dtype=entry.out_dtype, device=self.device)
            for start, stop in _spans(out.numel()):
                cand = entry.candidates(start, stop)
                keep = decide(self._chunk(entry, start, stop), cand)
                if cand is None:
                    out[start:stop] = keep
                else:
                    out[start:stop] = torch.where(cand, keep, entry.fill(start, stop))
            masks.append(out)
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


def _count(amount: float | int, size: int) -> int:
    """``prune._compute_nparams_toprune`` and ``_validate_pruning_amount``, with torch's error."""
    k = amount if isinstance(amount, int) else round(amount * size)
    if k > size:
        raise ValueError(f"amount={k} should be smaller than the number of parameters to prune={size}")
    return k


def _attach(module: nn.Module, name: str, method: prune.BasePruningMethod,
            new_mask: Callable[[torch.Tensor | None], torch.Tensor]) -> prune.BasePruningMethod:
    """``BasePruningMethod.apply`` step for step, with the mask given: ``new_mask(default_mask)`` gets the previous
    mask (None on first pruning) and returns the buffer to register."""
    method._tensor_name = name
    found = [(key, hook) for key, hook in module._forward_pre_hooks.items()
             if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == name]
    if len(found) > 1:
        raise AssertionError(f"Avoid adding multiple pruning hooks to the same tensor {name} of module {module}. "
                             "Use a PruningContainer.")
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


def _promoted(dtypes: Sequence[torch.dtype]) -> torch.dtype:
    return reduce(torch.promote_types, dtypes)


def l1_unstructured(module: nn.Module, name: str, amount: float | int) -> None:
    """``prune.l1_unstructured(module, name, amount)``: the same parameters, buffer, hook and mask.

    Modifies ``module`` in place by: 1) moving ``name`` to the parameter ``name + '_orig'`` (first pruning only);
    2) registering the buffer ``name + '_mask'`` (on a pruned tensor only entries whose mask is 1 are candidates);
    3) setting ``name`` to ``name_orig * name_mask``; 4) adding an ``L1Unstructured`` forward-pre hook (or
    appending it to the tensor's ``PruningContainer``).
    """
    method = prune.L1Unstructured(amount)
    scores = getattr(module, name)
    hooked = any(isinstance(h, prune.BasePruningMethod) and h._tensor_name == name
                 for h in module._forward_pre_hooks.values())
    old = getattr(module, name + "_mask").detach() if hooked else None
    entry = _Entry(scores.detach().reshape(-1), None if old is None else old.reshape(-1),
                   scores.dtype if old is None else old.dtype, scores.dtype)
    mask = _Selection([entry], scores.dtype, None, None).masks(amount)[0].view(scores.shape)
    _attach(module, name, method, lambda _default: mask)


def global_l1_unstructured(
    pairs: Sequence[tuple[nn.Module, str]],
    amount: float | int,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> None:
    """``prune.global_unstructured(pairs, prune.L1Unstructured, amount=amount)`` without concatenating anything.

    One threshold over all candidates (entries whose current mask is 1); each tensor then gets a
    ``CustomFromMask`` hook with its part of the global mask, as ``custom_from_mask`` gives it in torch. The model
    is changed only after every mask has been computed, so a cancel leaves it untouched.
    """
    prune.L1Unstructured(amount)  # torch validates the amount when it builds the method
    scores = [getattr(module, name).detach() for module, name in pairs]
    old = [getattr(module, name + "_mask", None) for module, name in pairs]
    dtype = _promoted([s.dtype for s in scores])
    mask_dtype = _promoted([s.dtype if m is None else m.dtype for s, m in zip(scores, old, strict=True)])
    entries = [_Entry(s.reshape(-1), None if m is None else m.detach().reshape(-1), mask_dtype, dtype)
               for s, m in zip(scores, old, strict=True)]
    masks = _Selection(entries, dtype, progress, cancel).masks(amount)
    check(cancel)
    for index, ((module, name), flat, tensor) in enumerate(zip(pairs, masks, scores, strict=True)):
        report(progress, 0.95 + 0.05 * index / len(pairs), "applying masks")
        part = flat.view(tensor.shape)
        method = prune.CustomFromMask(part)

        def new_mask(default: torch.Tensor | None, part: torch.Tensor = part, tensor: torch.Tensor = tensor,
                     method: prune.CustomFromMask = method) -> torch.Tensor:
            if default is None:  # torch: ones_like(orig) * mask
                return part.to(tensor.dtype)
            # torch: PruningContainer → CustomFromMask.compute_mask(t, default) = default * mask, in t's dtype
            combined = (default * part.to(default.dtype)).to(tensor.dtype)
            if _same_bits(combined, part):
                method.mask = combined  # the same values: keep one tensor, not two
            return combined

        _attach(module, name, method, new_mask)
    report(progress, 1.0, "done")
