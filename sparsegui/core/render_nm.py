"""The N:M view of a tensor: which entries sit in groups with more than N nonzeros (the mask view's overlay).

Nonzeros are those of the weight the forward uses (``X_orig * X_mask``: a kept zero is a zero). The picture is 1
on every entry of a non-compliant group and 0 elsewhere, reduced by blocks like any big picture (then it is the
share of such entries per block).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsegui.core.bitmask import BitMask
from sparsegui.core.nm import check_groups
from sparsegui.core.render import MAX_COLS, MAX_ROWS, RenderedTensor, render_values


@dataclass
class NMPicture:
    rendered: RenderedTensor
    compliance: float
    """The share of groups with at most ``keep`` nonzeros."""
    keep: int
    group: int
    dim: int


def render_nm(values: torch.Tensor, mask: torch.Tensor | BitMask | None, keep: int, group: int, dim: int, *,
              max_rows: int = MAX_ROWS, max_cols: int = MAX_COLS) -> NMPicture:
    """Render ``values`` (``X_orig`` when pruned) with ``mask`` as N:M violations along ``dim``."""
    nonzero = values.detach() != 0
    if mask is not None:
        kept = mask.bool_tensor(nonzero.device) if isinstance(mask, BitMask) else mask.detach() != 0
        nonzero &= kept.reshape(nonzero.shape)
    share, bad = check_groups(nonzero, keep, group, dim)
    rendered = render_values(bad.to(torch.uint8), None, "magnitude", max_rows=max_rows, max_cols=max_cols)
    rendered.mode = "nm"
    rendered.levels = (0.0, 1.0)
    return NMPicture(rendered, share, keep, group, dim)
