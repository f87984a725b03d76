"""Facts of one tensor the Details pane adds: 2:4 compliance and kernel eligibility, and what its zeros buy in
bytes (read at once for tensors up to :data:`NM_READ_LIMIT` entries; bigger ones show what the counts say)."""

from __future__ import annotations

from html import escape

from sparsegui.core.loading.budgets import size_text
from sparsegui.core.nm import check_groups, eligibility
from sparsegui.core.sizes import NOTE as SIZES_NOTE
from sparsegui.core.sizes import tensor_sizes
from sparsegui.core.state import TensorState
from sparsegui.core.stats import Count

NM_READ_LIMIT = 1 << 22
"""Tensors up to this many entries get their 2:4 compliance here at once; bigger ones in the mask view."""


def nm_rows(ts: TensorState, axes: tuple[str | None, ...]) -> list[tuple[str, str]]:
    """2:4 compliance along the input axis and which 2:4 kernels the weight's shape and dtype allow."""
    if "in" not in axes:
        return []
    dim = axes.index("in")
    shape = ts.values.shape
    if shape[dim] % 4:
        compliance = f"n/a: {shape[dim]} input features are not a multiple of 4"
    elif ts.numel <= NM_READ_LIMIT:
        share = check_groups(ts.effective() != 0, 2, 4, dim)[0]
        compliance = f"{share:.2%} of groups along dim {dim} have ≤ 2 nonzeros"
    else:
        compliance = "Mask tab ▸ Show: N:M groups (too big to read here)"
    kernels = "<br>".join(f"{'✓' if e.ok else '✗'} {escape(e.target)}: {escape(e.reason)}"
                          for e in eligibility(shape, ts.values.dtype, axes))
    note = '<br><span class="muted">A mask alone makes nothing faster or smaller: only these kernels use 2:4.</span>'
    return [("2:4 compliance", compliance), ("2:4 kernels", kernels + note)]


def size_rows(ts: TensorState, axes: tuple[str | None, ...], count: Count | None) -> list[tuple[str, str]]:
    """What the zeros buy in bytes: every layout for a tensor small enough to read here, else what the counts say."""
    if ts.numel <= NM_READ_LIMIT:
        sizes = tensor_sizes(ts, axes)
        shown = {"dense": sizes.dense, "+ 1-bit mask": sizes.dense_mask, "CSR": sizes.csr,
                 "2:4": sizes.nm_2_4, "zero rows/channels removed": sizes.shrunk}
    elif count is not None and count.zeros is not None:
        item = ts.values.tensor().element_size()
        nonzero = ts.numel - count.zeros
        rows = ts.values.shape[0] if ts.values.shape else 1
        shown = {"dense": ts.numel * item, "+ 1-bit mask": ts.numel * item + (ts.numel + 7) // 8,
                 "CSR": nonzero * (item + 4) + (rows + 1) * 4}
    else:
        return []
    text = "<br>".join(f"{name}: {size_text(value) if value is not None else 'n/a (not 2:4)'}"
                       for name, value in shown.items())
    return [("bytes", text + f'<br><span class="muted">{escape(SIZES_NOTE)}</span>')]
