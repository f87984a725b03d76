"""Naming tensors: qualified names (``layer1.0.conv1.weight``), glob patterns and module-type filters."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from torch import nn

from sparsegui.core.errors import PruneError
from sparsegui.core.pruned import forward_tensor_names, pruning_hooks

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class TensorRef:
    """A prunable tensor: the qualified module name (root is ``""``) and the tensor's local name."""

    module: str
    tensor: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.tensor}" if self.module else self.tensor

    @classmethod
    def parse(cls, qualname: str) -> TensorRef:
        module, _, tensor = qualname.rpartition(".")
        return cls(module, tensor)


def module_types(module: nn.Module) -> set[str]:
    """Names a type filter matches: the class and its bases, and a rebuilt module's guessed kind."""
    names = {c.__name__ for c in type(module).__mro__ if c not in (object, nn.Module)}
    kind = getattr(module, "kind", None)
    if isinstance(kind, str):
        names.add(kind)
    return names


def module_type_name(module: nn.Module) -> str:
    kind = getattr(module, "kind", None)
    return kind if isinstance(kind, str) else type(module).__name__


def all_tensors(model: nn.Module) -> list[TensorRef]:
    """Every prunable tensor of the model, in module order."""
    return [TensorRef(name, t) for name, module in model.named_modules() for t in forward_tensor_names(module)]


def pruned_tensors(model: nn.Module) -> list[TensorRef]:
    return [TensorRef(name, t) for name, module in model.named_modules() for t in pruning_hooks(module)]


def resolve_targets(
    model: nn.Module,
    patterns: Sequence[str],
    types: Iterable[str] | None = None,
    *,
    pruned_only: bool = False,
) -> list[TensorRef]:
    """Expand names and glob patterns to tensors, keeping the model's order; each pattern must match something."""
    if isinstance(patterns, str) or not patterns:
        raise PruneError("targets must be a non-empty list of tensor names or patterns")
    candidates = pruned_tensors(model) if pruned_only else all_tensors(model)
    wanted_types = set(types or ())
    if wanted_types:
        modules = dict(model.named_modules())
        candidates = [ref for ref in candidates if module_types(modules[ref.module]) & wanted_types]
    names = [ref.qualname for ref in candidates]
    chosen: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise PruneError(f"target {pattern!r} must be a tensor name such as 'conv1.weight'")
        if GLOB_CHARS & set(pattern):
            hits = [n for n in names if fnmatchcase(n, pattern)]
        else:
            hits = [pattern] if pattern in names else []
        if not hits:
            raise PruneError(_no_match_message(model, pattern, names, wanted_types, pruned_only))
        chosen.update(hits)
    return [ref for ref in candidates if ref.qualname in chosen]


def _no_match_message(model: nn.Module, pattern: str, names: list[str], types: set[str], pruned_only: bool) -> str:
    every = [ref.qualname for ref in all_tensors(model)]
    if pruned_only and pattern in every:
        return f"target {pattern!r} is not pruned"
    if types and (pattern in every or any(fnmatchcase(n, pattern) for n in every)):
        return f"target {pattern!r} is not in a module of type {', '.join(sorted(types))}"
    close = difflib.get_close_matches(pattern, every, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    kind = "pattern" if GLOB_CHARS & set(pattern) else "tensor"
    what = "pruned tensor" if pruned_only else "tensor"
    return f"unknown target {pattern!r} (no {what} matches this {kind}){hint}"
