"""Turn a tensor into a 2-D picture: a layout that keeps the tensor's structure, and block averaging for big ones.

Layouts: a 2-D weight ``(out, in)`` is shown as rows × columns; a 4-D conv weight ``(out, in, kh, kw)`` as a grid of
``out × in`` kernel tiles (optionally with a one-pixel NaN gap between tiles); 3-D ``(out, in, k)`` as
``out × (in·k)``; 1-D as a ``1 × n`` strip; 0-D as ``1 × 1``; more dimensions flatten the trailing ones.

Modes: ``"mask"`` (1 kept, 0 pruned; an unpruned tensor is all ones), ``"magnitude"`` (``|weight_orig|`` of a
pruned tensor, else ``|w|``) and ``"effective"`` (the weight the forward uses, signed). A layout larger than
``max_rows × max_cols`` is reduced by blocks, never by dropping rows: the fraction kept per block for masks, the
mean ``|value|`` per block otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sparsegui.core.bitmask import BitMask
from sparsegui.core.pruned import current_mask, pruning_hooks
from sparsegui.core.state import ModelState, count_zeros
from sparsegui.core.structure import ModelStructure

MODES = ("mask", "magnitude", "effective")
MAX_ROWS = 2048
MAX_COLS = 2048
GAP_LIMIT = 512  # conv tiles get gaps only while the gapped picture is at most this many pixels each way

Index = tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """Where each entry of a tensor of ``shape`` sits in a ``rows × cols`` picture."""

    kind: str  # "scalar", "strip", "matrix", "conv1d", "conv-grid" or "flattened"
    shape: tuple[int, ...]
    rows: int
    cols: int
    tile: tuple[int, int] = (1, 1)  # (kh, kw) of a conv grid
    gap: int = 0  # pixels between conv tiles

    def to_2d(self, values: np.ndarray) -> np.ndarray:
        """``values`` (of ``shape``) placed in the picture; gaps between tiles are NaN (floats only)."""
        if self.kind == "conv-grid":
            out, inp, kh, kw = self.shape
            tiles = values.transpose(0, 2, 1, 3)  # (out, kh, in, kw)
            if not self.gap:
                return tiles.reshape(self.rows, self.cols)
            if not np.issubdtype(values.dtype, np.floating):
                tiles = tiles.astype(np.float32)
            full = np.full((out, kh + self.gap, inp, kw + self.gap), np.nan, dtype=tiles.dtype)
            full[:, :kh, :, :kw] = tiles
            return full.reshape(out * (kh + self.gap), inp * (kw + self.gap))[: self.rows, : self.cols]
        return values.reshape(self.rows, self.cols)

    def index(self, row: int, col: int) -> Index | None:
        """The tensor index shown at picture ``(row, col)``; None outside the picture or in a gap."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            return None
        if self.kind == "scalar":
            return ()
        if self.kind == "strip":
            return (col,)
        if self.kind == "conv-grid":
            kh, kw = self.tile
            o, y = divmod(row, kh + self.gap)
            i, x = divmod(col, kw + self.gap)
            if y >= kh or x >= kw:
                return None
            return (o, i, y, x)
        if self.kind == "flattened" or self.kind == "conv1d":
            return (row, *(int(i) for i in np.unravel_index(col, self.shape[1:])))
        return (row, col)


def make_layout(shape: tuple[int, ...] | torch.Size, *, gaps: bool = True, max_rows: int = MAX_ROWS,
                max_cols: int = MAX_COLS) -> Layout:
    """The layout of a tensor of ``shape``; conv tiles get a one-pixel gap only when kernels are larger than 1 × 1
    and the gapped picture is small: within ``GAP_LIMIT`` (beyond that, gaps alias into stripes on screen) and
    within ``max_rows × max_cols`` (so a gapped picture is never downsampled)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return Layout("scalar", shape, 1, 1)
    if len(shape) == 1:
        return Layout("strip", shape, 1, shape[0])
    if len(shape) == 2:
        return Layout("matrix", shape, shape[0], shape[1])
    if len(shape) == 4:
        out, inp, kh, kw = shape
        if gaps and kh * kw > 1 and out and inp:
            rows, cols = out * (kh + 1) - 1, inp * (kw + 1) - 1
            if rows <= min(max_rows, GAP_LIMIT) and cols <= min(max_cols, GAP_LIMIT):
                return Layout("conv-grid", shape, rows, cols, (kh, kw), 1)
        return Layout("conv-grid", shape, out * kh, inp * kw, (kh, kw), 0)
    kind = "conv1d" if len(shape) == 3 else "flattened"
    return Layout(kind, shape, shape[0], math.prod(shape[1:]))


def block_sums(picture: np.ndarray, row_step: int, col_step: int, dtype: type | np.dtype) -> np.ndarray:
    """Sums over ``row_step × col_step`` blocks (the last blocks may be smaller), accumulated in ``dtype``.

    Equivalent to zero-padding to whole blocks, then ``reshape(nr, row_step, nc, col_step).sum((1, 3))``, but adds
    strided slices instead, which neither copies the input nor reduces over short inner axes (≈10 ms for a
    50257×768 mask)."""
    rows, cols = picture.shape
    nr, nc = -(-rows // row_step), -(-cols // col_step)
    by_rows = np.zeros((nr, cols), dtype=dtype)
    for i in range(row_step):
        part = picture[i::row_step]
        by_rows[: part.shape[0]] += part
    if col_step == 1:
        return by_rows
    sums = np.zeros((nr, nc), dtype=dtype)
    for j in range(col_step):
        part = by_rows[:, j::col_step]
        sums[:, : part.shape[1]] += part
    return sums


def block_counts(rows: int, cols: int, row_step: int, col_step: int) -> np.ndarray:
    """How many picture pixels each block of :func:`block_sums` holds."""
    r = np.minimum(row_step, rows - np.arange(0, rows, row_step))
    c = np.minimum(col_step, cols - np.arange(0, cols, col_step))
    return np.outer(r, c).astype(np.float32)


def _count_dtype(block: int) -> type:
    if block <= np.iinfo(np.uint8).max:
        return np.uint8
    if block <= np.iinfo(np.uint16).max:
        return np.uint16
    return np.uint32


@dataclass
class Probe:
    """What the cursor points at: the tensor ``index`` (the block's first entry when downsampled), the displayed
    ``value``, and the picture rows/columns the pixel covers."""

    index: Index
    value: float
    rows: range
    cols: range
    exact: bool


@dataclass
class RenderedTensor:
    """A display-ready picture of a tensor: ``image`` (float32, row-major; NaN in gaps), colour ``levels``,
    the block size ``row_step × col_step`` (1 × 1 when not reduced) and the ``layout``."""

    image: np.ndarray
    levels: tuple[float, float]
    row_step: int
    col_step: int
    layout: Layout
    mode: str
    signed: bool = False
    _value_at: Callable[[Index], float] | None = None

    @property
    def downsampled(self) -> bool:
        return self.row_step > 1 or self.col_step > 1

    @property
    def factor(self) -> int:
        """Picture pixels per displayed pixel."""
        return self.row_step * self.col_step

    def probe(self, row: int, col: int) -> Probe | None:
        """The tensor index and value under displayed pixel ``(row, col)``; None outside the image or in a gap."""
        if not (0 <= row < self.image.shape[0] and 0 <= col < self.image.shape[1]):
            return None
        rows = range(row * self.row_step, min((row + 1) * self.row_step, self.layout.rows))
        cols = range(col * self.col_step, min((col + 1) * self.col_step, self.layout.cols))
        index = self.layout.index(rows.start, cols.start)
        value = float(self.image[row, col])
        if index is None or math.isnan(value):
            return None
        index = tuple(int(i) for i in index)
        exact = not self.downsampled
        if exact and self._value_at is not None:
            value = self._value_at(index)
        return Probe(index, value, rows, cols, exact)


def is_kept(mask: torch.Tensor | BitMask, index: Index) -> bool:
    """Whether ``mask`` keeps the entry at ``index``."""
    return mask.at(index) if isinstance(mask, BitMask) else float(mask[index]) != 0


def tensor_parts(module: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(values, mask)`` for local tensor ``name`` of ``module``: for a pruned ``X``, ``X_orig`` and ``X_mask``;
    for the raw ``X_orig`` parameter, itself and ``X_mask``; otherwise the tensor and None."""
    if name in pruning_hooks(module):
        orig = module._parameters[name + "_orig"]
        assert orig is not None
        return orig.detach(), current_mask(module, name)
    tensor = getattr(module, name)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name!r} of {type(module).__name__} is not a tensor")
    mask = None
    if name.endswith("_orig"):
        mask = current_mask(module, name[: -len("_orig")])
    return tensor.detach(), mask


def state_parts(structure: ModelStructure, state: ModelState, path: str, local: str
                ) -> tuple[torch.Tensor, BitMask | torch.Tensor | None]:
    """``(values, mask)`` for local tensor ``local`` of module ``path`` in ``state``, as :func:`tensor_parts` gives
    them for the module in torch's form: for a pruned ``X`` or its ``X_orig``, the values and the mask; for anything
    else (``X_mask`` included) the tensor and None."""
    slot = structure.modules[path]
    canonical = structure.slots.get((path, local.removesuffix("_orig"))) or structure.slots.get((path, local))
    if canonical is not None:
        ts = state.tensors[canonical]
        return ts.values.tensor(), None if ts.pruning is None else ts.pruning.mask
    base = local.removesuffix("_mask")
    canonical = structure.slots.get((path, base))
    if canonical is not None and local.endswith("_mask") and state.tensors[canonical].pruning is not None:
        pruning = state.tensors[canonical].pruning
        assert pruning is not None
        return pruning.mask.as_dtype(pruning.mask_dtype), None
    buffer = next((b for b in slot.buffers if b.name == local), None)
    if buffer is None or buffer.tensor is None:
        raise TypeError(f"{local!r} of {slot.type_name} is not a tensor")
    return buffer.tensor, None


def render_values(
    values: torch.Tensor,
    mask: torch.Tensor | BitMask | None = None,
    mode: str = "mask",
    *,
    max_rows: int = MAX_ROWS,
    max_cols: int = MAX_COLS,
    gaps: bool = True,
) -> RenderedTensor:
    """Render ``values`` (a weight, ``X_orig`` when pruned) with optional ``mask`` in ``mode``; see the module doc."""
    if mode not in MODES:
        raise ValueError(f"unknown render mode {mode!r}; choose one of: {', '.join(MODES)}")
    if max_rows < 1 or max_cols < 1:
        raise ValueError(f"max_rows and max_cols must be positive, got {max_rows} × {max_cols}")
    if values.is_meta:
        raise ValueError("the tensor is on the meta device and has no values to show")
    layout = make_layout(values.shape, gaps=gaps, max_rows=max_rows, max_cols=max_cols)
    row_step, col_step = -(-layout.rows // max_rows), -(-layout.cols // max_cols)
    if row_step * col_step > 1 and layout.kind in BANDED:
        return _render_banded(values, mask, mode, layout, row_step, col_step)
    cpu = values.detach().cpu()
    if isinstance(mask, BitMask):
        mask_np: np.ndarray | None = mask.numpy()
    else:
        mask_np = None if mask is None else mask.detach().cpu().float().numpy()
    signed = False
    if mode == "mask":
        kept = np.ones(tuple(cpu.shape), dtype=bool) if mask_np is None else mask_np != 0
        source = kept
        if row_step * col_step > 1:
            picture = layout.to_2d(kept)
            sums = block_sums(picture, row_step, col_step, _count_dtype(row_step * col_step))
            image = sums / block_counts(picture.shape[0], picture.shape[1], row_step, col_step)
        else:
            image = layout.to_2d(kept.astype(np.float32))
        levels = (0.0, 1.0)
    else:
        source = cpu.float().numpy()
        if mode == "effective" and mask_np is not None:
            source = source * mask_np
        shown = np.abs(source) if mode == "magnitude" or row_step * col_step > 1 else source
        picture = layout.to_2d(shown)
        if row_step * col_step > 1:
            image = block_sums(picture, row_step, col_step, np.float32) / block_counts(
                picture.shape[0], picture.shape[1], row_step, col_step
            )
        else:
            image = picture
            signed = mode == "effective"
        finite = image[np.isfinite(image)]
        top = float(np.abs(finite).max()) if finite.size else 0.0
        if top <= 0:
            top = 1.0
        levels = (-top, top) if signed else (0.0, top)
    image = np.ascontiguousarray(image, dtype=np.float32)
    if mode == "magnitude":
        def value_at(index: Index) -> float:
            return abs(float(source[index]))
    else:
        def value_at(index: Index) -> float:
            return float(source[index])
    return RenderedTensor(image, levels, row_step, col_step, layout, mode, signed, value_at)


BANDED = ("matrix", "flattened", "conv1d")
"""Layouts whose picture rows are the tensor's rows in order: a big one is reduced band by band (a few rows at a
time), never as a whole float copy."""


def _render_banded(values: torch.Tensor, mask: torch.Tensor | BitMask | None, mode: str, layout: Layout,
                   row_step: int, col_step: int) -> RenderedTensor:
    """The downsampled picture of a big tensor, computed ``row_step`` rows at a time: fraction kept per block for
    masks, mean ``|value|`` per block otherwise (the effective value is ``value × mask``)."""
    rows, cols = layout.rows, layout.cols
    flat = values.detach().reshape(rows, cols)
    col_starts = np.arange(0, cols, col_step)
    counts = block_counts(rows, cols, row_step, col_step)
    image = np.empty((len(range(0, rows, row_step)), len(col_starts)), dtype=np.float32)
    for band, start in enumerate(range(0, rows, row_step)):
        stop = min(rows, start + row_step)
        kept = None
        if mask is not None:
            if isinstance(mask, BitMask):
                kept = mask.chunk(start * cols, stop * cols).reshape(stop - start, cols)
            else:
                kept = mask.detach().reshape(rows, cols)[start:stop].cpu().numpy() != 0
        if mode == "mask":
            summed = kept.sum(axis=0, dtype=np.float32) if kept is not None else \
                np.full(cols, stop - start, dtype=np.float32)
        else:
            part = flat[start:stop].cpu().float().numpy()
            if mode == "effective" and kept is not None:
                part = part * kept
            summed = np.abs(part).sum(axis=0, dtype=np.float32)
        image[band] = np.add.reduceat(summed, col_starts)
    image /= counts
    if mode == "mask":
        levels = (0.0, 1.0)
    else:
        finite = image[np.isfinite(image)]
        top = float(finite.max()) if finite.size else 0.0
        levels = (0.0, top if top > 0 else 1.0)
    return RenderedTensor(np.ascontiguousarray(image), levels, row_step, col_step, layout, mode, False, None)


def render_tensor(
    module: nn.Module,
    name: str,
    mode: str = "mask",
    *,
    max_rows: int = MAX_ROWS,
    max_cols: int = MAX_COLS,
    gaps: bool = True,
) -> RenderedTensor:
    """Render local tensor ``name`` of ``module`` (``"weight"``, ``"weight_orig"``, ``"weight_mask"``…)."""
    values, mask = tensor_parts(module, name)
    return render_values(values, mask, mode, max_rows=max_rows, max_cols=max_cols, gaps=gaps)


def pruning_threshold(module: nn.Module, name: str) -> float | None:
    """The largest ``|X_orig|`` among the pruned entries of ``name``: every entry at or below it could have gone.

    None when ``name`` is not pruned or its mask prunes nothing."""
    if name not in pruning_hooks(module):
        return None
    orig, mask = tensor_parts(module, name)
    if mask is None or orig.is_meta:
        return None
    return masked_threshold(orig, mask)


def masked_threshold(values: torch.Tensor, mask: torch.Tensor | BitMask) -> float | None:
    """The largest ``|values|`` where ``mask`` is 0 (NaN if one of those is NaN); None when nothing is masked."""
    if isinstance(mask, BitMask):
        if mask.zeros == 0:
            return None
        mask = mask.bool_tensor()
    elif mask.numel() == 0 or float(mask.min()) != 0:  # masks hold 0 and 1: no zero, nothing pruned
        return None
    # torch releases the GIL here (numpy's boolean assignment does not): this may run beside the UI thread
    return float(values.detach().abs().masked_fill_(mask != 0, 0).max())


@dataclass
class Histogram:
    """A histogram of ``|values|``: ``counts`` per bin between ``edges``, ``pruned_counts`` of the masked entries
    (both from one value in ``step`` when the tensor is big), ``pruned_total`` masked entries in all and the
    ``threshold`` of :func:`masked_threshold` (None when not asked for or nothing is masked)."""

    edges: np.ndarray
    counts: np.ndarray
    pruned_counts: np.ndarray
    pruned_total: int
    step: int
    numel: int
    threshold: float | None


def magnitude_histogram(values: torch.Tensor, mask: torch.Tensor | BitMask | None, bins: int = 100, *,
                        sample_limit: int = 1 << 22, threshold: bool = False) -> Histogram:
    """Histogram of ``|values|`` (an even sample of at most about ``sample_limit`` values: an odd stride does not
    lock onto the columns of a matrix) and of its entries where ``mask`` is 0. Reads the model, changes nothing:
    safe to run off the UI thread."""
    flat = values.detach().reshape(-1)
    numel = flat.numel()
    step = max(1, math.ceil(numel / sample_limit))
    step += step > 1 and step % 2 == 0
    magnitudes = flat[::step].cpu().float().abs().numpy()
    finite = magnitudes[np.isfinite(magnitudes)]
    top = float(finite.max()) if finite.size else 0.0
    span = (0.0, top if top > 0 else 1.0)
    edges = np.linspace(*span, bins + 1)
    counts = np.histogram(finite, bins, span)[0]
    pruned_total = 0
    pruned_counts = np.zeros_like(counts)
    limit = None
    if mask is not None:
        if isinstance(mask, BitMask):
            pruned_total = mask.zeros
            flat_mask = torch.from_numpy(mask.numpy().reshape(-1)) if pruned_total else \
                torch.ones(numel, dtype=torch.bool)
        else:
            flat_mask = mask.detach().cpu().reshape(-1)
            pruned_total = count_zeros(flat_mask)
        sample = magnitudes[(flat_mask[::step] == 0).numpy()]
        pruned_counts = np.histogram(sample[np.isfinite(sample)], bins, span)[0]
        if threshold and pruned_total:
            limit = masked_threshold(values, mask)
    return Histogram(edges, counts, pruned_counts, pruned_total, step, numel, limit)
