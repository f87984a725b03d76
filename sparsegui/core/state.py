"""The pruning state of a model, kept leanly and immutably.

``torch.nn.utils.prune`` changes modules in place: ``X`` becomes the parameter ``X_orig``, a buffer ``X_mask`` (in
``X``'s dtype), a forward-pre hook and a plain attribute ``X = X_orig * X_mask``. SparseGUI keeps the same facts as
values that never change once made:

- :class:`Values` — what ``X_orig`` (or an unpruned ``X``) holds: the original tensor as opened (memory-mapped where
  the file allows), or the product a ``remove`` made permanent, computed when something needs it;
- :class:`Pruning` — the mask (1 bit per entry, :class:`~sparsegui.core.bitmask.BitMask`), the dtype torch's mask
  buffer has, and the pruning methods in the order applied (the hook torch would hold);
- :class:`ModuleLayout` — the order of a module's parameters, buffers and pruning hooks as torch would leave them;
- :class:`ModelState` — all of the above for a model at one moment.

An operation computes new :class:`TensorState` objects from the current ones without changing anything, and the
document then swaps the whole :class:`ModelState`: undo is taking the previous one back, and a view may read any
state at any time from any thread. Zero counts are cached on the objects they describe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.utils import prune

from sparsegui.core.bitmask import CHUNK, BitMask
from sparsegui.core.progress import CancelToken, check


@dataclass(frozen=True)
class Scan:
    """What one pass over a tensor found: entries equal to zero (``-0.0`` included, NaN not) and NaN/±Inf entries;
    a pass over a whole tensor also sums the squares of its entries (in float64: ``‖X‖²``, for norm removed)."""

    zeros: int
    nonfinite: int
    sumsq: float | None = field(default=None, compare=False)


_NUMPY_DTYPES = frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                           torch.float32, torch.float64})
_CPU_COMPUTE = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64,
                          torch.complex128, torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32,
                          torch.int64})


_FP4 = getattr(torch, "float4_e2m1fn_x2", None)


def computable(part: torch.Tensor) -> torch.Tensor:
    """``part`` in a dtype the CPU computes on, with the same zeros and NaN/Inf: float8 and wide unsigned integers
    become float32; a dtype torch cannot convert is read as its bytes (for packed fp4, the two values of a byte
    with the sign bits cleared: the byte counts as zero when both are ±0; fp4 has no NaN or Inf)."""
    if part.device.type != "cpu" or part.dtype in _CPU_COMPUTE:
        return part
    try:
        return part.to(torch.float32)
    except (RuntimeError, TypeError, NotImplementedError):
        raw = part.contiguous().view(torch.uint8)
        return raw & 0x77 if part.dtype == _FP4 else raw


def _count_zeros(part: torch.Tensor) -> int:
    if part.device.type == "cpu" and part.dtype in _NUMPY_DTYPES:
        return part.numel() - int(np.count_nonzero(part.numpy()))
    return part.numel() - int(torch.count_nonzero(part))


def scan(tensor: torch.Tensor, cancel: CancelToken | None = None) -> Scan:
    """Count zeros and NaN/Inf of ``tensor`` chunk by chunk (no full-size temporary); ``cancel`` is checked before
    each chunk."""
    if tensor.is_meta:
        return Scan(0, 0)
    flat = tensor.detach().reshape(-1)
    zeros = nonfinite = 0
    sumsq: float | None = 0.0
    for start in range(0, flat.numel(), CHUNK):
        check(cancel)
        part = computable(flat[start : start + CHUNK])
        zeros += _count_zeros(part)
        if part.is_floating_point() or part.is_complex():
            nonfinite += part.numel() - int(torch.isfinite(part).sum())
        if sumsq is not None and (part.dtype == tensor.dtype or part.is_floating_point()):
            sumsq += squares(part)
        else:  # read as raw bytes (packed fp4 and dtypes torch cannot convert): no magnitudes
            sumsq = None
    return Scan(zeros, nonfinite, sumsq)


def squares(part: torch.Tensor) -> float:
    """The sum of the squared magnitudes of ``part``'s entries, accumulated in float64."""
    if part.is_complex():
        return float(torch.linalg.vector_norm(part.to(torch.complex128))) ** 2
    if not part.is_floating_point():
        part = part.to(torch.float64)
    return float(torch.linalg.vector_norm(part, dtype=torch.float64)) ** 2


def count_zeros(tensor: torch.Tensor) -> int:
    """Entries equal to zero (``-0.0`` included, NaN not)."""
    return scan(tensor).zeros


def masked_scan(values: torch.Tensor, mask: BitMask, known: Scan | None, cancel: CancelToken | None = None) -> Scan:
    """The :class:`Scan` of ``mask * values`` without computing the product: a pruned entry is zero unless its value
    is NaN or ±Inf (``0 × NaN`` is NaN), a kept entry is zero where its value is."""
    if known is not None and known.nonfinite == 0 and known.zeros == 0:
        return Scan(mask.zeros, 0)
    flat = values.detach().reshape(-1)
    zeros = nonfinite = 0
    for start, stop, keep in mask.chunks():
        check(cancel)
        part = computable(flat[start:stop])
        kept = torch.from_numpy(keep)
        if part.device.type != "cpu":
            kept = kept.to(part.device)
        finite = torch.isfinite(part) if part.is_floating_point() or part.is_complex() else torch.ones_like(kept)
        zeros += int(((part == 0) & kept).sum()) + int((finite & ~kept).sum())
        nonfinite += part.numel() - int(finite.sum())
    return Scan(zeros, nonfinite)


class Values:
    """What a tensor holds before any current mask: the original tensor, or a product made permanent by ``remove``."""

    __slots__ = ("__weakref__", "_lock", "_scan")

    def __init__(self) -> None:
        self._scan: Scan | None = None
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def tensor(self) -> torch.Tensor:
        """The values (the original is shared, not copied; a product is computed now)."""
        raise NotImplementedError

    def scan(self, cancel: CancelToken | None = None) -> Scan:
        """Zeros and NaN/Inf of the values (one pass, done once; a cancelled pass keeps nothing)."""
        with self._lock:
            if self._scan is None:
                self._scan = self._known() or scan(self.tensor(), cancel)
            return self._scan

    @property
    def scanned(self) -> Scan | None:
        """The :class:`Scan` if it is known without reading the tensor."""
        return self._scan or self._known()

    def learn(self, zeros: int, nonfinite: int) -> None:
        """Zeros and NaN/Inf counted by someone who read every entry anyway (a pruning pass)."""
        with self._lock:
            if self._scan is None:
                self._scan = Scan(zeros, nonfinite)

    def _known(self) -> Scan | None:
        return None


class Holder:
    """The original data of one tensor; a device move replaces :attr:`tensor` (every state sees the move)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor.detach()


class Original(Values):
    """The tensor as opened (memory-mapped where the file allows), held by a :class:`Holder`."""

    __slots__ = ("holder",)

    def __init__(self, holder: Holder) -> None:
        super().__init__()
        self.holder = holder

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.holder.tensor.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.holder.tensor.dtype

    @property
    def device(self) -> torch.device:
        return self.holder.tensor.device

    def tensor(self) -> torch.Tensor:
        return self.holder.tensor


class Baked(Values):
    """``prune.remove`` made a mask permanent: the values are ``mask.to(dtype) * before`` (as torch's
    ``apply_mask``), computed whenever they are needed."""

    __slots__ = ("before", "mask")

    def __init__(self, before: Values, mask: BitMask) -> None:
        super().__init__()
        self.before = before
        self.mask = mask

    @property
    def shape(self) -> tuple[int, ...]:
        return self.before.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.before.dtype

    @property
    def device(self) -> torch.device:
        return self.before.device

    def tensor(self) -> torch.Tensor:
        return masked_product(self.before.tensor(), self.mask)

    def fill(self, out: torch.Tensor) -> torch.Tensor:
        """Write the values flattened into ``out`` (1-D, their dtype and size; on the CPU)."""
        return fill_masked(self.before.tensor(), self.mask, out)

    def _known(self) -> Scan | None:
        known = self.before.scanned
        if known is not None and known.nonfinite == 0 and known.zeros == 0:
            return Scan(self.mask.zeros, 0)
        return None


class PackedCustomMask:
    """A ``CustomFromMask`` pruning method whose mask is kept as bits (``dtype`` is its tensor's dtype in torch)."""

    __slots__ = ("dtype", "mask")

    def __init__(self, mask: BitMask, dtype: torch.dtype) -> None:
        self.mask = mask
        self.dtype = dtype

    def method(self, device: torch.device | None = None) -> prune.CustomFromMask:
        return prune.CustomFromMask(self.mask.as_dtype(self.dtype, device))

    def placeholder(self) -> prune.CustomFromMask:
        """A ``CustomFromMask`` with a meta-device mask: enough to sit in a container, holding no memory."""
        return prune.CustomFromMask(torch.empty(self.mask.shape, dtype=self.dtype, device="meta"))


MethodEntry = prune.BasePruningMethod | PackedCustomMask


def method_class(entry: MethodEntry) -> type[prune.BasePruningMethod]:
    return prune.CustomFromMask if isinstance(entry, PackedCustomMask) else type(entry)


@dataclass(frozen=True, eq=False)
class Pruning:
    """torch's reparametrization of one tensor: its mask, the mask buffer's dtype and the methods applied."""

    mask: BitMask
    mask_dtype: torch.dtype
    methods: tuple[MethodEntry, ...]

    @property
    def hook_class(self) -> str:
        return "PruningContainer" if len(self.methods) > 1 else method_class(self.methods[0]).__name__


def masked_product(values: torch.Tensor, mask: BitMask) -> torch.Tensor:
    """``values * mask`` as torch's ``X_orig * X_mask`` (in the values' dtype); on the CPU into one new tensor,
    piece by piece."""
    if values.device.type != "cpu":
        return mask.as_dtype(values.dtype, values.device) * values
    out = torch.empty(values.shape, dtype=values.dtype)
    fill_masked(values, mask, out.view(-1))
    return out


def fill_masked(values: torch.Tensor, mask: BitMask, out: torch.Tensor) -> torch.Tensor:
    """``out`` (1-D, ``values``' dtype and size, on the CPU) = ``values * mask`` flattened, as torch's
    ``X_orig * X_mask``, piece by piece: no weight-sized mask in the weight's dtype next to it."""
    flat = values.detach().reshape(-1)
    factor = torch.empty(min(CHUNK * 4, max(flat.numel(), 1)), dtype=flat.dtype)
    for start in range(0, flat.numel(), factor.numel()):
        stop = min(start + factor.numel(), flat.numel())
        _masked(flat[start:stop], mask, start, factor, out[start:stop])
    return out


def _masked(values: torch.Tensor, mask: BitMask, start: int, factor: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` = entries ``start:start+len(values)`` of ``X_orig * X_mask``: the mask's 0/1 in the weight's dtype
    (``factor``, at least as long, is scratch) times the values, entry by entry as torch."""
    n = values.numel()
    factor[:n].copy_(torch.from_numpy(mask.chunk(start, start + n)))
    return torch.mul(values, factor[:n], out=out)


class TensorState:
    """One prunable tensor at one moment: its values and, when pruned, its :class:`Pruning`."""

    __slots__ = ("__weakref__", "_lock", "_scan", "pruning", "values")

    def __init__(self, values: Values, pruning: Pruning | None = None) -> None:
        self.values = values
        self.pruning = pruning
        self._scan: Scan | None = None
        self._lock = threading.Lock()

    @property
    def pruned(self) -> bool:
        return self.pruning is not None

    @property
    def numel(self) -> int:
        return self.values.numel

    def effective(self) -> torch.Tensor:
        """The tensor the forward uses: ``X_orig * X_mask`` (in ``X_orig``'s dtype, as torch) or the values."""
        values = self.values.tensor()
        return values if self.pruning is None else masked_product(values, self.pruning.mask)

    @property
    def fillable(self) -> bool:
        """Whether :meth:`fill_effective` can compute the product: pruned values on the CPU (values are always
        detached from autograd)."""
        return self.pruning is not None and self.values.device.type == "cpu"

    def fill_effective(self, out: torch.Tensor) -> torch.Tensor:
        """Write ``X_orig * X_mask`` flattened into ``out`` (1-D, the weight's dtype and size). Only when
        :attr:`fillable`."""
        assert self.pruning is not None
        return fill_masked(self.values.tensor(), self.pruning.mask, out)

    def effective_chunks(self, size: int = CHUNK * 16) -> Iterator[torch.Tensor] | None:
        """The effective tensor flattened, ``size`` entries at a time, computed into a ring of three reused
        buffers (each chunk is valid until two more have been asked for: one may be computed ahead while one is
        written): what a streaming writer needs, without a weight-sized temporary. None when the values are not a
        plain original on the CPU (then use :meth:`effective`)."""
        if self.pruning is None or not isinstance(self.values, Original) or self.values.device.type != "cpu":
            return None
        return self._chunks(self.values.tensor().detach().reshape(-1), self.pruning.mask, size)

    @staticmethod
    def _chunks(flat: torch.Tensor, mask: BitMask, size: int) -> Iterator[torch.Tensor]:
        size = min(size, max(flat.numel(), 1))
        factor = torch.empty(size, dtype=flat.dtype)
        ring = [torch.empty(size, dtype=flat.dtype) for _ in range(3)]
        for index, start in enumerate(range(0, flat.numel(), size)):
            stop = min(start + size, flat.numel())
            yield _masked(flat[start:stop], mask, start, factor, ring[index % 3][: stop - start])

    def scan(self, cancel: CancelToken | None = None) -> Scan:
        """Zeros and NaN/Inf of the effective tensor (counted once; from the mask alone when the values hold
        neither zeros nor NaN/Inf; ``cancel`` stops the pass between chunks, keeping nothing)."""
        with self._lock:
            if self._scan is None:
                known = self.scanned
                if known is None:
                    values = self.values.scan(cancel)
                    known = values if self.pruning is None else \
                        masked_scan(self.values.tensor(), self.pruning.mask, values, cancel)
                self._scan = known
            return self._scan

    def zeros(self) -> int:
        return self.scan().zeros

    @property
    def scanned(self) -> Scan | None:
        """The :class:`Scan` if it is known without reading the tensor, else None."""
        if self._scan is not None:
            return self._scan
        base = self.values.scanned
        if base is None or self.pruning is None:
            return base
        if base.zeros == 0 and base.nonfinite == 0:
            return Scan(self.pruning.mask.zeros, 0)
        return None


@dataclass(frozen=True)
class ModuleLayout:
    """The order torch leaves a module's parameters, buffers and pruning hooks in (its history decides it)."""

    params: tuple[str, ...]
    buffers: tuple[str, ...]
    hooks: tuple[str, ...] = ()

    def pruned(self, local: str, first: bool) -> ModuleLayout:
        """After ``prune.*(module, local)``: the first time ``local`` moves to the end as ``local_orig`` and
        ``local_mask`` is appended; every time the hook goes to the end of the hooks."""
        params, buffers = self.params, self.buffers
        if first:
            params = (*tuple(p for p in params if p != local), local + "_orig")
            buffers = (*tuple(b for b in buffers if b != local + "_mask"), local + "_mask")
        hooks = (*tuple(h for h in self.hooks if h != local), local)
        return ModuleLayout(params, buffers, hooks)

    def removed(self, local: str) -> ModuleLayout:
        """After ``prune.remove(module, local)``: ``local_orig`` goes, ``local`` is appended again, mask and hook
        go."""
        params = (*tuple(p for p in self.params if p != local + "_orig"), local)
        buffers = tuple(b for b in self.buffers if b != local + "_mask")
        hooks = tuple(h for h in self.hooks if h != local)
        return ModuleLayout(params, buffers, hooks)

    def forward_names(self, empty: frozenset[str] = frozenset()) -> list[str]:
        """The module's forward tensors in torch's order (``X_orig`` of a pruned ``X`` listed as ``X``), leaving out
        the ``empty`` (``None``) ones."""
        hooked = set(self.hooks)
        return [p[: -len("_orig")] if p.endswith("_orig") and p[: -len("_orig")] in hooked else p
                for p in self.params if p not in empty]


@dataclass(frozen=True, eq=False)
class ModelState:
    """Every prunable tensor's state (by canonical qualified name) and every module's layout (by module path)."""

    tensors: Mapping[str, TensorState]
    layouts: Mapping[str, ModuleLayout]

    def with_changes(self, tensors: Mapping[str, TensorState], layouts: Mapping[str, ModuleLayout]) -> ModelState:
        merged = dict(self.tensors)
        merged.update(tensors)
        merged_layouts = dict(self.layouts)
        merged_layouts.update(layouts)
        return ModelState(merged, merged_layouts)

    def pruned_names(self) -> list[str]:
        return [name for name, ts in self.tensors.items() if ts.pruning is not None]

    def changed_since(self, other: ModelState) -> list[str]:
        """Tensors whose state object differs from ``other``'s."""
        return [name for name, ts in self.tensors.items() if other.tensors.get(name) is not ts]

    def masks(self) -> Iterable[BitMask]:
        for ts in self.tensors.values():
            if ts.pruning is not None:
                yield ts.pruning.mask


