"""N:M semi-structured sparsity: keep ``keep`` of every ``group`` consecutive entries along the input axis.

"2:4" here means NVIDIA's convention — 2 entries *kept* in every 4 (llm-compressor's "N:M" counts zeros; the two
agree only at 2:4). Groups run along a weight's **input axis**: dim 1 of a ``Linear`` weight (out, in) and of a conv
weight (out, in, kh, kw), dim 0 of GPT-2's ``Conv1D`` weight (in, out) — the orientation the mask view shows.

:class:`NMUnstructured` is a ``torch.nn.utils.prune.BasePruningMethod``, so it works on any module without
SparseGUI (``NMUnstructured.apply(module, "weight", keep=2, group=4, dim=1)``) and composes with earlier pruning in a
``PruningContainer``: entries pruned before score 0, so each group ends with at most ``keep`` nonzeros.

Masking alone makes nothing faster or smaller: a 2:4 mask needs a sparse kernel (PyTorch's semi-structured sparse
tensors on a GPU, TensorRT, vLLM) to pay off. :func:`eligibility` says which of those a tensor's shape and dtype
allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

ROWS_PER_STEP = 1 << 20
"""Entries scored at a time (the sort's scratch stays bounded on big tensors)."""


def check_nm(keep: object, group: object) -> tuple[int, int]:
    """Refuse settings that do not make an N:M pattern (whole numbers, 1 ≤ keep < group)."""
    for name, value in (("keep", keep), ("group", group)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}={value!r} must be a whole number")
    assert isinstance(keep, int) and isinstance(group, int)
    if group < 2:
        raise ValueError(f"group={group} must be at least 2")
    if not 1 <= keep < group:
        raise ValueError(f"keep={keep} must be from 1 to {group - 1} (group={group})")
    return keep, group


def parse_nm(text: str) -> tuple[int, int]:
    """``"2:4"`` → (2, 4): keep 2 of every 4."""
    left, sep, right = text.partition(":")
    if not sep or not left.strip().isdigit() or not right.strip().isdigit():
        raise ValueError(f"{text!r} is not an N:M pattern such as 2:4 (keep N of every M)")
    return check_nm(int(left), int(right))


def _rows(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """``tensor`` with ``dim`` moved last, as rows (a view when ``dim`` is already last)."""
    return tensor.movedim(dim, -1).reshape(-1, tensor.shape[dim])


def _unrows(rows: torch.Tensor, shape: Sequence[int], dim: int) -> torch.Tensor:
    moved = [s for i, s in enumerate(shape) if i != dim] + [shape[dim]]
    return rows.reshape(moved).movedim(-1, dim)


def nm_keep(scores: torch.Tensor, keep: int, group: int, dim: int) -> torch.Tensor:
    """A bool tensor like ``scores``: in each group of ``group`` consecutive entries along ``dim``, the ``keep``
    largest scores (ties: the lower index)."""
    size = scores.shape[dim]
    if size % group:
        raise ValueError(f"{size} entries along dim {dim} are not a multiple of the group size {group}")
    rows = _rows(scores, dim)
    out = torch.zeros(rows.shape, dtype=torch.bool, device=scores.device)
    step = max(1, ROWS_PER_STEP // max(size, 1))
    for start in range(0, rows.shape[0], step):
        block = rows[start : start + step].reshape(-1, size // group, group)
        order = torch.sort(block, dim=-1, descending=True, stable=True).indices[..., :keep]
        chosen = torch.zeros(block.shape, dtype=torch.bool, device=scores.device).scatter_(-1, order, True)
        out[start : start + step] = chosen.reshape(-1, size)
    return _unrows(out, scores.shape, dim)


class NMUnstructured(prune.BasePruningMethod):
    """Keep the ``keep`` largest |w| of every ``group`` consecutive entries along ``dim`` (N:M sparsity)."""

    PRUNING_TYPE = "global"  # in a PruningContainer, see the whole tensor and the mask so far (groups stay whole)

    def __init__(self, keep: int = 2, group: int = 4, dim: int = -1) -> None:
        check_nm(keep, group)
        self.keep = keep
        self.group = group
        self.dim = dim

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        dim = self.dim % t.dim()
        scores = t.detach().abs() * default_mask  # entries pruned before score 0: they stay pruned
        chosen = nm_keep(scores, self.keep, self.group, dim)
        return default_mask * chosen.to(default_mask.dtype)

    @classmethod
    def apply(cls, module: nn.Module, name: str, keep: int = 2, group: int = 4,  # type: ignore[override]
              dim: int = -1, importance_scores: torch.Tensor | None = None) -> NMUnstructured:
        return super().apply(module, name, keep=keep, group=group, dim=dim,  # type: ignore[no-any-return]
                             importance_scores=importance_scores)


def nm_unstructured(module: nn.Module, name: str, keep: int = 2, group: int = 4, dim: int = -1) -> nn.Module:
    """Like ``torch.nn.utils.prune.l1_unstructured``: prune ``module.<name>`` to ``keep``:``group`` along ``dim``."""
    NMUnstructured.apply(module, name, keep=keep, group=group, dim=dim)
    return module


def group_counts(tensor: torch.Tensor, group: int, dim: int) -> torch.Tensor:
    """Nonzeros in each group of ``group`` consecutive entries along ``dim`` (int32, the group axis last)."""
    size = tensor.shape[dim]
    if size % group:
        raise ValueError(f"{size} entries along dim {dim} are not a multiple of the group size {group}")
    rows = _rows(tensor.detach(), dim)
    out = torch.empty(rows.shape[0], size // group, dtype=torch.int32, device=tensor.device)
    step = max(1, ROWS_PER_STEP // max(size, 1))
    for start in range(0, rows.shape[0], step):
        block = rows[start : start + step].reshape(-1, size // group, group)
        out[start : start + step] = (block != 0).sum(dim=-1, dtype=torch.int32)
    return out


def compliance(tensor: torch.Tensor, keep: int, group: int, dim: int) -> float:
    """The share of groups along ``dim`` with at most ``keep`` nonzeros (1.0: the tensor is ``keep``:``group``)."""
    counts = group_counts(tensor, group, dim)
    return float((counts <= keep).sum()) / counts.numel() if counts.numel() else 1.0


def violations(tensor: torch.Tensor, keep: int, group: int, dim: int) -> torch.Tensor:
    """A bool tensor like ``tensor``: True on every entry of a group that has more than ``keep`` nonzeros."""
    return check_groups(tensor, keep, group, dim)[1]


def check_groups(tensor: torch.Tensor, keep: int, group: int, dim: int) -> tuple[float, torch.Tensor]:
    """:func:`compliance` and :func:`violations` of ``tensor`` from one count of its groups."""
    counts = group_counts(tensor, group, dim)
    bad = counts > keep
    share = 1.0 - float(bad.sum()) / bad.numel() if bad.numel() else 1.0
    return share, _unrows(bad.repeat_interleave(group, dim=1), tensor.shape, dim)


@dataclass(frozen=True)
class Eligibility:
    """Whether a kernel family can use a tensor as 2:4 sparse, and why not."""

    target: str
    ok: bool
    reason: str


def _torch_backends() -> list[tuple[str, dict[torch.dtype, tuple[int, int]]]]:
    """PyTorch's semi-structured backends and their (min rows, min cols) per dtype, read from torch itself."""
    try:
        from torch.sparse import semi_structured as semi
    except ImportError:  # pragma: no cover - every torch this project pins has it
        return []
    found = []
    for label, cls_name in (("PyTorch semi-structured (CUTLASS)", "SparseSemiStructuredTensorCUTLASS"),
                            ("PyTorch semi-structured (cuSPARSELt)", "SparseSemiStructuredTensorCUSPARSELT")):
        cls = getattr(semi, cls_name, None)
        constraints = getattr(cls, "_DTYPE_SHAPE_CONSTRAINTS", None)
        if constraints:
            found.append((label, {d: (c.sparse_min_rows, c.sparse_min_cols) for d, c in constraints.items()}))
    return found


def eligibility(shape: Sequence[int], dtype: torch.dtype, axes: Sequence[str | None]) -> list[Eligibility]:
    """Can 2:4 kernels use this weight? PyTorch's semi-structured tensors (2-D, dtype, minimum rows × cols and
    multiples of them) and NVIDIA's rule (rows % 8 == 0, input features % 16 == 0); rows are output features."""
    if len(shape) != 2 or "in" not in axes or "out" not in axes:
        why = "only 2-D weights with known input and output axes (Linear, Conv1D) are matrix-multiplied as 2:4"
        return [Eligibility(label, False, why) for label in
                [*(b for b, _ in _torch_backends()), "NVIDIA 2:4 (ModelOpt, TensorRT)"]]
    rows, cols = shape[list(axes).index("out")], shape[list(axes).index("in")]
    out = []
    name = str(dtype).removeprefix("torch.")
    for label, limits in _torch_backends():
        if dtype not in limits:
            out.append(Eligibility(label, False, f"{name} is not one of its dtypes "
                                                 f"({', '.join(str(d).removeprefix('torch.') for d in limits)})"))
            continue
        min_rows, min_cols = limits[dtype]
        if rows < min_rows or rows % min_rows or cols < min_cols or cols % min_cols:
            out.append(Eligibility(label, False, f"{rows} out × {cols} in: both must be multiples of "
                                                 f"{min_rows} × {min_cols} for {name}"))
        else:
            out.append(Eligibility(label, True, f"{rows} out × {cols} in, {name}; needs a CUDA GPU"))
    if rows % 8 or cols % 16:
        out.append(Eligibility("NVIDIA 2:4 (ModelOpt, TensorRT)", False,
                               f"{rows} out × {cols} in: out must be a multiple of 8 and in of 16"))
    else:
        out.append(Eligibility("NVIDIA 2:4 (ModelOpt, TensorRT)", True, f"{rows} out × {cols} in"))
    return out
