"""Sensitivity scans: prune each tensor alone at each level, record what it costs, change nothing.

For every chosen tensor and level, the step ``prune <method> amount=level`` is *planned* on the current state (the
same planning the app and recipes use, so the masks are exactly torch's) and never committed; the signal is then
measured on the planned state:

- ``norm_removed`` — ‖W ⊙ (1 − M)‖ / ‖W‖ (:mod:`sparsegui.core.energy`), always available;
- ``output_drift`` — ‖f_pruned(x) − f(x)‖ / ‖f(x)‖ over the whole output for sample inputs ``x``, when the model can
  run a forward pass (a demo, ``--arch``, a trusted module, a Hugging Face architecture).

L1 unstructured with norm removed needs no plan at all: torch prunes the k smallest |w| among the entries still
kept, so one sort of a tensor gives every level (exact whatever the ties, since tied entries remove the same
energy). Memory stays at the model plus one tensor's scratch.
"""

from __future__ import annotations

import csv
import io
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sparsegui.core import energy
from sparsegui.core.errors import PruneError
from sparsegui.core.fastprune import count_to_prune
from sparsegui.core.inputs import Inputs, drift, output_tensors
from sparsegui.core.methods import resolve_method
from sparsegui.core.operations import MAX_SEED, plan_prune
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.state import TensorState, computable
from sparsegui.core.steps import PruneStep
from sparsegui.core.targets import resolve_targets

if TYPE_CHECKING:
    from sparsegui.core.document import Document

DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SIGNALS = ("norm_removed", "output_drift")


@dataclass
class Curve:
    """One tensor's signal at each level (in level order)."""

    name: str
    numel: int
    values: list[float]


@dataclass
class Sensitivity:
    signal: str
    method: str
    levels: list[float]
    curves: list[Curve]
    settings: dict[str, Any] = field(default_factory=dict)
    """The method's other settings (n, dim, seed) so the scan can be repeated."""

    def to_json(self) -> dict[str, Any]:
        return {"signal": self.signal, "method": self.method, **self.settings, "levels": list(self.levels),
                "tensors": [{"name": c.name, "values": [_finite(v) for v in c.values]} for c in self.curves]}

    def to_csv(self) -> str:
        """Distiller's layout: one row per tensor and level, ``parameter,sparsity,signal``."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["parameter", "sparsity", self.signal])
        for curve in self.curves:
            for level, value in zip(self.levels, curve.values, strict=True):
                writer.writerow([curve.name, level, value])
        return out.getvalue()

    def matrix(self) -> np.ndarray:
        """Tensors × levels."""
        return np.array([c.values for c in self.curves], dtype=float).reshape(len(self.curves), len(self.levels))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def parse_levels(text: str) -> list[float]:
    """``"0.1,0.5,0.9"`` → levels (fractions from 0 to 1, ascending, each once)."""
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise PruneError(f"levels {text!r} must be fractions separated by commas, e.g. 0.1,0.5,0.9") from exc
    return check_levels(levels)


def check_levels(levels: Sequence[float]) -> list[float]:
    if not levels:
        raise PruneError("give at least one level")
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 <= float(level) <= 1.0:
            raise PruneError(f"level {level!r} must be a fraction from 0 to 1")
    return sorted({float(level) for level in levels})


def l1_norm_curve(ts: TensorState, levels: Sequence[float]) -> list[float]:
    """Norm removed by ``l1_unstructured`` at each level on top of ``ts`` (one sort of the kept entries)."""
    root, masks = energy.lineage(ts)
    values = computable(root.tensor().detach().reshape(-1)).cpu()
    if not values.is_floating_point():
        values = values.to(torch.float64)
    kept = np.ones(values.numel(), dtype=bool)
    for mask in masks:
        kept &= mask.numpy().reshape(-1)
    magnitudes = values.abs().float().numpy()
    total = float(np.dot(magnitudes.astype(np.float64), magnitudes.astype(np.float64)))
    gone = magnitudes[~kept].astype(np.float64)
    removed_before = float(np.dot(gone, gone))
    remaining = np.sort(magnitudes[kept])  # ascending |w|: torch prunes the first k
    counts = [count_to_prune(level, remaining.size) for level in levels]
    sums, done, running = {}, 0, 0.0
    for k in sorted(set(counts)):
        while done < k:
            part = remaining[done : min(k, done + (1 << 20))].astype(np.float64)
            running += float(np.dot(part, part))
            done += part.size
        sums[k] = running
    if not total or not math.isfinite(total):
        return [0.0 if not total else math.nan for _ in levels]
    return [math.sqrt((removed_before + sums[k]) / total) for k in counts]


def scan(doc: Document, targets: Sequence[str], levels: Sequence[float] = DEFAULT_LEVELS,
         method: str = "l1_unstructured", *, types: Sequence[str] | None = None, n: object = None,
         dim: object = None, seed: int | None = None,
         inputs: Inputs | None = None, progress: ProgressCallback | None = None,
         cancel: CancelToken | None = None) -> Sensitivity:
    """Prune each of ``targets`` alone at each of ``levels`` with ``method`` and record the signal: output drift when
    ``inputs`` are given, else norm removed. Reads the current state; changes nothing."""
    levels = check_levels(levels)
    spec = resolve_method(method)
    if not spec.takes_amount:
        raise PruneError(f"{spec.name} takes no amount; a sensitivity scan prunes each tensor at several amounts")
    state = doc.state
    names = resolve_targets(doc.structure, state, targets, types)
    if spec.seeded and seed is None:
        seed = secrets.randbelow(2**31)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise PruneError(f"seed={seed!r} must be a whole number from 0 to {MAX_SEED}")
    signal = "output_drift" if inputs is not None else "norm_removed"
    run: _Forward | None = _Forward(doc, inputs) if inputs is not None else None
    fast = signal == "norm_removed" and spec.name == "l1_unstructured"
    curves = []
    for index, name in enumerate(names):
        check(cancel)
        report(progress, index / len(names), f"{spec.name} on {name}")
        ts = state.tensors[name]
        if fast:
            values = l1_norm_curve(ts, levels)
        else:
            values = []
            for level in levels:
                check(cancel)
                step = PruneStep(spec.name, (name,), amount=level, n=n, dim=dim, seed=seed)  # type: ignore[arg-type]
                planned = plan_prune(doc.structure, state, step, device=doc.device).tensors[name]
                values.append(run.drift({name: planned}) if run is not None else energy.measure(planned).norm_removed)
        curves.append(Curve(name, ts.numel, values))
    report(progress, 1.0, "scanned")
    settings = {k: v for k, v in (("n", n), ("dim", dim), ("seed", seed)) if v is not None}
    return Sensitivity(signal, spec.name, list(levels), curves, settings)


class _Forward:
    """Runs the model on fixed inputs in eval mode without gradients; the first run is the reference."""

    def __init__(self, doc: Document, inputs: Inputs) -> None:
        if doc.source.inferred or any(m.inferred for m in doc.structure.modules.values()):
            raise PruneError("output drift needs the model's real architecture (a demo, --arch, a trusted model or "
                             "a Hugging Face folder with transformers installed); this tree was rebuilt from the "
                             "file's keys, which cannot run a forward pass")
        self.doc = doc
        self.inputs = inputs.to(doc.device)
        with doc.forward_with({}) as model:
            self.base = self._run(model)
        if not self.base:
            raise PruneError("the model's output holds no floating-point tensor to compare")

    def _run(self, model: torch.nn.Module) -> list[torch.Tensor]:
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                output = model(*self.inputs.args, **self.inputs.kwargs)
        except Exception as exc:  # the user's inputs do not fit the model: say so in one line
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise PruneError(f"the model cannot run on these inputs ({type(exc).__name__}: {detail})") from exc
        finally:
            model.train(training)
        return [t.detach().clone() for t in output_tensors(output)]

    def drift(self, tensors: dict[str, TensorState]) -> float:
        with self.doc.forward_with(tensors) as model:
            return drift(self.base, self._run(model))
