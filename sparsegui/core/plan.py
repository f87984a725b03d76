"""A per-tensor plan for a global sparsity target, from a sensitivity scan.

The rule (documented in the README): among all ways to prune the entries the target needs, take the one with the
smallest **summed signal** Σₜ fₜ(kₜ), where fₜ is tensor t's scan curve (the signal after pruning kₜ more of its
entries, linear between the scanned levels). On each curve's lower convex hull this is a greedy choice — the
cheapest signal per entry first — and the result is compared with uniform pruning (every tensor the same share) on
the same curves: if uniform is not worse, uniform is the plan. So the plan is honest by construction:

- its overall sparsity over the chosen tensors equals the target to the entry (amounts are entry counts, which
  torch prunes exactly);
- its summed signal on the scan is never above uniform pruning's at the same target.

Levels are shares of the entries each tensor still keeps, as torch's ``amount`` is; a plan cannot go past the
highest scanned level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sparsegui.core import energy
from sparsegui.core.errors import PruneError
from sparsegui.core.recipe import recipe_from_steps
from sparsegui.core.sensitivity import Sensitivity
from sparsegui.core.state import ModelState
from sparsegui.core.steps import PruneStep


@dataclass
class Plan:
    target: float
    method: str
    signal: str
    names: list[str]
    numel: dict[str, int]
    before: dict[str, int]
    """Entries each tensor had pruned already (its current mask)."""
    counts: dict[str, int]
    """Entries to prune now, per tensor (the plan)."""
    uniform: dict[str, int]
    planned_signal: float
    uniform_signal: float
    rule: str
    settings: dict[str, Any]

    def sparsity(self, counts: Mapping[str, int] | None = None) -> dict[str, float]:
        """Each tensor's sparsity after the plan (or after ``counts``)."""
        counts = self.counts if counts is None else counts
        return {n: (self.before[n] + counts[n]) / self.numel[n] for n in self.names}

    @property
    def overall(self) -> float:
        total = sum(self.numel.values())
        return (sum(self.before.values()) + sum(self.counts.values())) / total if total else 0.0

    def steps(self) -> list[PruneStep]:
        """One ``prune`` step per tensor that prunes anything, with its entry count as the amount."""
        seed = self.settings.get("seed")
        extra = {k: v for k, v in self.settings.items() if k in ("n", "dim")}
        return [PruneStep(self.method, (name,), amount=self.counts[name], seed=seed, **extra)
                for name in self.names if self.counts[name]]

    def recipe(self) -> dict[str, Any]:
        return recipe_from_steps([step.to_json() for step in self.steps()])

    def to_json(self) -> dict[str, Any]:
        planned, uniform = self.sparsity(), self.sparsity(self.uniform)
        return {"target": self.target, "overall": self.overall, "method": self.method, "signal": self.signal,
                "rule": self.rule, "planned_signal": self.planned_signal, "uniform_signal": self.uniform_signal,
                "tensors": [{"name": n, "numel": self.numel[n], "prune": self.counts[n], "sparsity": planned[n],
                             "uniform_sparsity": uniform[n]} for n in self.names]}


def _interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    for (x0, y0), (x1, y1) in pairwise(points):
        if x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def _hull(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The lower convex hull of points sorted by x (Andrew's monotone chain, lower half)."""
    hull: list[tuple[float, float]] = []
    for point in points:
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            if (x1 - x0) * (point[1] - y0) - (y1 - y0) * (point[0] - x0) <= 0:
                hull.pop()
            else:
                break
        hull.append(point)
    return hull


def _spread(total: int, weights: Mapping[str, int], share: float) -> dict[str, int]:
    """``share`` of each weight, rounded so the counts sum to ``total`` (largest remainders first)."""
    raw = {n: share * w for n, w in weights.items()}
    counts = {n: min(weights[n], math.floor(v)) for n, v in raw.items()}
    left = total - sum(counts.values())
    for name in sorted(raw, key=lambda n: (counts[n] - raw[n], n)):
        if left <= 0:
            break
        if counts[name] < weights[name]:
            counts[name] += 1
            left -= 1
    return counts


def make_plan(scan: Sensitivity, state: ModelState, target: float) -> Plan:
    """Per-tensor entry counts reaching ``target`` overall sparsity over the scanned tensors."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 <= target <= 1.0:
        raise PruneError(f"target {target!r} must be a sparsity from 0 to 1")
    names = [c.name for c in scan.curves]
    numel = {c.name: c.numel for c in scan.curves}
    prunings = {n: state.tensors[n].pruning for n in names}
    before = {n: 0 if pruning is None else pruning.mask.zeros for n, pruning in prunings.items()}
    remaining = {n: numel[n] - before[n] for n in names}
    total = sum(numel.values())
    need = round(target * total) - sum(before.values())
    if need < 0:
        raise PruneError(f"these tensors are already {sum(before.values()) / total:.2%} sparse, past the target "
                         f"{target:.2%}")
    top = max(scan.levels)
    reachable = sum(math.floor(top * r) for r in remaining.values())
    if need > reachable:
        raise PruneError(f"the scan goes up to {top:g} of each tensor's remaining entries; the target {target:.2%} "
                         "needs more: scan higher levels")
    curves: dict[str, list[tuple[float, float]]] = {}
    for curve in scan.curves:
        name = curve.name
        start = 0.0 if scan.signal == "output_drift" else energy.measure(state.tensors[name]).norm_removed
        points = [(0.0, start)] + [(level * remaining[name], value)
                                   for level, value in zip(scan.levels, curve.values, strict=True) if level > 0]
        if any(not math.isfinite(y) for _, y in points):
            raise PruneError(f"{name}: the scan has no finite signal (NaN or Inf in the weights or outputs)")
        curves[name] = points

    def summed(counts: Mapping[str, int]) -> float:
        return sum(_interpolate(curves[n], counts[n]) for n in names)

    uniform = _spread(need, remaining, need / sum(remaining.values()) if need else 0.0)
    segments = []
    for name in names:
        hull = _hull(curves[name])
        for i, ((x0, y0), (x1, y1)) in enumerate(pairwise(hull)):
            segments.append(((y1 - y0) / (x1 - x0), name, i, x0, x1))
    segments.sort(key=lambda s: (s[0], s[1], s[2]))
    counts = dict.fromkeys(names, 0)
    left = need
    for _slope, name, _i, _x0, x1 in segments:
        if left <= 0:
            break
        take = min(left, math.floor(x1) - counts[name]) if x1 > counts[name] else 0
        take = max(0, min(take, remaining[name] - counts[name]))
        counts[name] += take
        left -= take
    if left > 0:  # rounding at segment ends: give the rest where the curves still have room, cheapest first
        for _slope, name, _i, _x0, _x1 in segments:
            room = min(math.floor(top * remaining[name]), remaining[name]) - counts[name]
            take = max(0, min(left, room))
            counts[name] += take
            left -= take
            if left <= 0:
                break
    planned, flat = summed(counts), summed(uniform)
    rule = "least summed signal on the scan (greedy on each curve's convex hull)"
    if planned > flat:
        counts, planned, rule = dict(uniform), flat, "uniform (nothing better on this scan)"
    return Plan(target, scan.method, scan.signal, names, numel, before, counts, uniform, planned, flat, rule,
                dict(scan.settings))
