"""Compare two checkpoints tensor by tensor: what changed, how much, and whether the zeros moved.

Both sides are open documents (any format SparseGUI opens; wrapper prefixes already stripped), matched by canonical
tensor name. Each side's tensor is what its forward uses (``X_orig * X_mask`` when it opened pruned). Per tensor:

- ``status``: ``same``, ``changed``, ``only_a``, ``only_b`` or ``shape_changed``;
- ``sparsity_a``/``sparsity_b``; ``changed_fraction`` — the share of entries whose value differs (NaN equals NaN);
- ``relative_change`` — ‖B − A‖₂ / ‖A‖₂ (float64);
- ``zero_jaccard`` — |Z_A ∩ Z_B| / |Z_A ∪ Z_B| over the zero entries (1.0 when neither has a zero).

One tensor at a time, chunk by chunk: memory stays at one tensor per side (a pruned one's product) plus a chunk.
Values are compared in the promoted dtype of the two sides.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from sparsegui.core.bitmask import CHUNK
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.state import TensorState, computable
from sparsegui.core.targets import model_order

if TYPE_CHECKING:
    from sparsegui.core.document import Document

STATUSES = ("same", "changed", "only_a", "only_b", "shape_changed")
COLUMNS = ("name", "status", "shape_a", "shape_b", "sparsity_a", "sparsity_b", "changed_fraction", "relative_change",
           "zero_jaccard")


@dataclass
class TensorDiff:
    name: str
    status: str
    shape_a: list[int] | None
    shape_b: list[int] | None
    sparsity_a: float | None = None
    sparsity_b: float | None = None
    changed_fraction: float | None = None
    relative_change: float | None = None
    zero_jaccard: float | None = None
    numel: int = 0
    changed: int = 0
    delta_sq: float = field(default=0.0, repr=False)
    a_sq: float = field(default=0.0, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("numel", "changed", "delta_sq", "a_sq"):
            del out[key]
        for key in ("relative_change",):
            value = out[key]
            if value is not None and not math.isfinite(value):
                out[key] = None
        return out


@dataclass
class Diff:
    a: dict[str, Any]
    b: dict[str, Any]
    tensors: list[TensorDiff]

    def totals(self) -> dict[str, Any]:
        compared = [t for t in self.tensors if t.status in ("same", "changed")]
        numel = sum(t.numel for t in compared)
        changed = sum(t.changed for t in compared)
        a_sq, delta_sq = sum(t.a_sq for t in compared), sum(t.delta_sq for t in compared)
        counts = {status: sum(1 for t in self.tensors if t.status == status) for status in STATUSES}
        return {**counts, "compared_entries": numel, "changed_fraction": changed / numel if numel else 0.0,
                "relative_change": math.sqrt(delta_sq / a_sq) if a_sq else (0.0 if not delta_sq else None)}

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "tensors": [t.to_json() for t in self.tensors], "totals": self.totals()}

    def to_csv(self) -> str:
        """The table as CSV (shapes as ``120x400``, empty cells where a value does not apply)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for row in self.to_json()["tensors"]:
            writer.writerow({k: "" if row[k] is None else "x".join(map(str, row[k])) if isinstance(row[k], list)
                             else row[k] for k in COLUMNS})
        return out.getvalue()

    def most_changed(self) -> list[TensorDiff]:
        """Tensors by relative change, largest first (then the ones that exist on one side only)."""
        def key(t: TensorDiff) -> tuple[int, float]:
            value = t.relative_change
            return (0, -value) if value is not None and math.isfinite(value) else (1, 0.0)
        return sorted(self.tensors, key=key)


def _sparsity(ts: TensorState) -> float:
    return ts.scan().zeros / ts.numel if ts.numel else 0.0


def compare_tensors(name: str, a: TensorState, b: TensorState) -> TensorDiff:
    """One matched tensor's :class:`TensorDiff` (one pass over both)."""
    shape_a, shape_b = list(a.values.shape), list(b.values.shape)
    if shape_a != shape_b:
        return TensorDiff(name, "shape_changed", shape_a, shape_b, _sparsity(a), _sparsity(b))
    left, right = a.effective().detach().reshape(-1), b.effective().detach().reshape(-1)
    numel = left.numel()
    changed = zeros_a = zeros_b = both = 0
    delta_sq = a_sq = 0.0
    for start in range(0, numel, CHUNK):
        x, y = computable(left[start : start + CHUNK]).cpu(), computable(right[start : start + CHUNK]).cpu()
        common = torch.promote_types(x.dtype, y.dtype)
        if common == torch.bool:
            common = torch.uint8
        x, y = x.to(common), y.to(common)
        equal = x == y
        if x.is_floating_point():
            equal |= torch.isnan(x) & torch.isnan(y)
        changed += int((~equal).sum())
        zx, zy = x == 0, y == 0
        zeros_a += int(zx.sum())
        zeros_b += int(zy.sum())
        both += int((zx & zy).sum())
        xd, yd = x.double(), y.double()
        delta_sq += float(torch.linalg.vector_norm(yd - xd)) ** 2
        a_sq += float(torch.linalg.vector_norm(xd)) ** 2
    union = zeros_a + zeros_b - both
    relative = math.sqrt(delta_sq / a_sq) if a_sq else (0.0 if delta_sq == 0 else math.inf)
    return TensorDiff(name, "changed" if changed else "same", shape_a, shape_b,
                      zeros_a / numel if numel else 0.0, zeros_b / numel if numel else 0.0,
                      changed / numel if numel else 0.0, relative, both / union if union else 1.0,
                      numel, changed, delta_sq, a_sq)


def diff_documents(a: Document, b: Document, progress: ProgressCallback | None = None,
                   cancel: CancelToken | None = None) -> Diff:
    """Compare every tensor of ``a`` with the tensor of the same name in ``b`` (then list ``b``'s others)."""
    names_a = model_order(a.structure, a.state)
    names_b = model_order(b.structure, b.state)
    in_b = set(names_b)
    tensors = []
    total = len(names_a) + len(names_b)
    for index, name in enumerate(names_a):
        check(cancel)
        report(progress, index / max(total, 1), f"comparing {name}")
        ts = a.state.tensors[name]
        if name not in in_b:
            tensors.append(TensorDiff(name, "only_a", list(ts.values.shape), None, _sparsity(ts)))
            continue
        tensors.append(compare_tensors(name, ts, b.state.tensors[name]))
    in_a = set(names_a)
    for name in names_b:
        if name not in in_a:
            ts = b.state.tensors[name]
            tensors.append(TensorDiff(name, "only_b", None, list(ts.values.shape), None, _sparsity(ts)))
    report(progress, 1.0, "compared")
    return Diff(_side(a), _side(b), tensors)


def _side(doc: Document) -> dict[str, Any]:
    source = doc.source
    return {"path": source.path, "format": source.format, "demo": source.demo, "key": source.key}
