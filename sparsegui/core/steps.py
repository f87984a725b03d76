"""The one description of an operation: what the Prune panel asks for, what a recipe step says, what history keeps.

``PruneStep`` prunes each target with one method, ``GlobalStep`` prunes the targets together with one threshold
(``prune.global_unstructured``), ``RemoveStep`` makes pruning permanent (``prune.remove``). ``to_json`` gives the
recipe form; :func:`step_from_json` reads it back (after :func:`sparsegui.core.recipe.validate_recipe` checked its
shape). A step as recorded by the history has its targets resolved to tensor names, a seed for every random
method and an absolute mask path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sparsegui.core.errors import RecipeError

Amount = int | float


def amount_text(amount: object) -> str:
    if isinstance(amount, float):
        return f"{amount * 100:g}%"
    return f"{amount}" if amount is not None else ""


def where_text(targets: Sequence[str]) -> str:
    return targets[0] if len(targets) == 1 else f"{len(targets)} tensors"


@dataclass(frozen=True)
class PruneStep:
    """``prune.<method>(module, name, …)`` on each target (in model order)."""

    method: str
    targets: tuple[str, ...]
    types: tuple[str, ...] = ()
    amount: Amount | None = None
    n: int | float | str | None = None
    dim: int | None = None
    seed: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    mask: str | None = None
    keep: int | None = None
    group: int | None = None
    op: str = field(default="prune", init=False)

    def label(self) -> str:
        name = self.method.rsplit(":", 1)[-1]
        setting = f"{self.keep}:{self.group}" if self.keep is not None else amount_text(self.amount)
        return " ".join(f"{name} {setting} on {where_text(self.targets)}".split())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": "prune", "method": self.method, "targets": list(self.targets)}
        if self.types:
            out["types"] = list(self.types)
        for key in ("amount", "n", "dim", "keep", "group"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.params:
            out["params"] = dict(self.params)
        if self.mask is not None:
            out["mask"] = self.mask
        if self.seed is not None:
            out["seed"] = self.seed
        return out


@dataclass(frozen=True)
class GlobalStep:
    """``prune.global_unstructured`` over the targets: one threshold for all of them."""

    method: str
    targets: tuple[str, ...]
    amount: Amount
    types: tuple[str, ...] = ()
    seed: int | None = None
    op: str = field(default="global", init=False)

    def label(self) -> str:
        return f"global {self.method} {amount_text(self.amount)} on {where_text(self.targets)}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": "global", "method": self.method, "targets": list(self.targets),
                               "amount": self.amount}
        if self.types:
            out["types"] = list(self.types)
        if self.seed is not None:
            out["seed"] = self.seed
        return out


@dataclass(frozen=True)
class RemoveStep:
    """``prune.remove`` on each pruned target: its pruning becomes permanent."""

    targets: tuple[str, ...] = ("*",)
    types: tuple[str, ...] = ()
    op: str = field(default="remove", init=False)

    def label(self) -> str:
        return f"remove pruning on {where_text(self.targets)}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": "remove", "targets": list(self.targets)}
        if self.types:
            out["types"] = list(self.types)
        return out


Step = PruneStep | GlobalStep | RemoveStep


def step_from_json(step: Mapping[str, Any]) -> Step:
    """A step from its recipe form (already checked by :func:`~sparsegui.core.recipe.validate_recipe`)."""
    op = step.get("op")
    targets = tuple(step.get("targets") or ())
    types = tuple(step.get("types") or ())
    if op == "remove":
        return RemoveStep(targets, types)
    if op == "global":
        return GlobalStep(step["method"], targets, step["amount"], types, step.get("seed"))
    if op == "prune":
        params = dict(step.get("params") or {})
        return PruneStep(step["method"], targets, types, step.get("amount"), step.get("n"), step.get("dim"),
                         step.get("seed"), params, step.get("mask"), step.get("keep"), step.get("group"))
    raise RecipeError(f"unknown op {op!r}; use prune, global or remove")


def resolved(step: Step, targets: Sequence[str], **changes: Any) -> Step:
    """``step`` as history records it: concrete targets (no patterns or type filters) and ``changes``."""
    return replace(step, targets=tuple(targets), types=(), **changes)
