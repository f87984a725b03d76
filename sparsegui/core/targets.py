"""Naming tensors: qualified names (``layer1.0.conv1.weight``), glob patterns and module-type filters.

Names resolve to canonical tensor names (a tied tensor's aliases resolve to it, once) in model order: modules in
``named_modules`` order, and within a module the order torch keeps its parameters in (a pruned ``X`` moved to the
end as ``X_orig``), which is the order torch's functions would meet them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from sparsegui.core.errors import PruneError
from sparsegui.core.names import qualify, split
from sparsegui.core.state import ModelState
from sparsegui.core.structure import ModelStructure

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class TensorRef:
    """A prunable tensor: the qualified module name (root is ``""``) and the tensor's local name."""

    module: str
    tensor: str

    @property
    def qualname(self) -> str:
        return qualify(self.module, self.tensor)

    @classmethod
    def parse(cls, qualname: str) -> TensorRef:
        module, tensor = split(qualname)
        return cls(module, tensor)


def named_tensors(structure: ModelStructure, state: ModelState) -> list[tuple[str, str]]:
    """``(name, canonical name)`` of every forward tensor of every module, aliases included, in model order."""
    found = []
    for path, slot in structure.modules.items():
        layout = state.layouts.get(path) or slot.layout()
        for local in layout.forward_names(slot.empty):
            canonical = structure.slots.get((path, local))
            if canonical is not None:
                found.append((qualify(path, local), canonical))
    return found


def model_order(structure: ModelStructure, state: ModelState) -> list[str]:
    """Canonical tensor names in model order."""
    return list(dict.fromkeys(canonical for _, canonical in named_tensors(structure, state)))


def resolve_targets(
    structure: ModelStructure,
    state: ModelState,
    patterns: Sequence[str],
    types: Iterable[str] | None = None,
    *,
    pruned_only: bool = False,
) -> list[str]:
    """Expand names and glob patterns to canonical tensor names in model order; each pattern must match something."""
    if isinstance(patterns, str) or not patterns:
        raise PruneError("targets must be a non-empty list of tensor names or patterns")
    every = named_tensors(structure, state)
    wanted_types = set(types or ())
    candidates = [(name, canonical) for name, canonical in every
                  if (not pruned_only or state.tensors[canonical].pruned)
                  and (not wanted_types or structure.modules[name.rpartition(".")[0]].types & wanted_types)]
    chosen: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise PruneError(f"target {pattern!r} must be a tensor name such as 'conv1.weight'")
        glob = bool(GLOB_CHARS & set(pattern))
        hits = {canonical for name, canonical in candidates
                if (fnmatchcase(name, pattern) if glob else name == pattern)}
        if not hits:
            raise PruneError(_no_match_message(pattern, [n for n, _ in every], state, structure, wanted_types,
                                               pruned_only))
        chosen |= hits
    return [name for name in dict.fromkeys(c for _, c in every) if name in chosen]


def _no_match_message(pattern: str, every: list[str], state: ModelState, structure: ModelStructure,
                      types: set[str], pruned_only: bool) -> str:
    if pruned_only and pattern in every:
        return f"target {pattern!r} is not pruned"
    if types and (pattern in every or any(fnmatchcase(n, pattern) for n in every)):
        return f"target {pattern!r} is not in a module of type {', '.join(sorted(types))}"
    close = difflib.get_close_matches(pattern, every, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    kind = "pattern" if GLOB_CHARS & set(pattern) else "tensor"
    what = "pruned tensor" if pruned_only else "tensor"
    return f"unknown target {pattern!r} (no {what} matches this {kind}){hint}"
