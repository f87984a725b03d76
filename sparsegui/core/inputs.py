"""Sample inputs for a forward pass (output drift): a file holding a tensor, a tuple of tensors or a dict of keyword
tensors — data, never code (pickles load with ``weights_only=True``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparsegui.core.errors import LoadError
from sparsegui.core.loading.paths import require_regular_file


@dataclass
class Inputs:
    """Positional and keyword arguments of ``model(*args, **kwargs)``."""

    args: tuple[torch.Tensor, ...] = ()
    kwargs: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> Inputs:
        return Inputs(tuple(a.to(device) for a in self.args), {k: v.to(device) for k, v in self.kwargs.items()})

    def describe(self) -> str:
        parts = [f"{list(a.shape)} {str(a.dtype).removeprefix('torch.')}" for a in self.args]
        parts += [f"{k}={list(v.shape)} {str(v.dtype).removeprefix('torch.')}" for k, v in self.kwargs.items()]
        return ", ".join(parts)


def _tensors(name: str, values: Sequence[Any]) -> tuple[torch.Tensor, ...]:
    if not values or not all(isinstance(v, torch.Tensor) for v in values):
        raise LoadError(f"{name}: inputs must be tensors (a tensor, a tuple of tensors or a dict of them)")
    return tuple(values)


def inputs_from(name: str, value: object) -> Inputs:
    """Inputs from what a file held: a tensor, a tuple/list of tensors, or a dict (keyword arguments; keys ``"0"``,
    ``"1"``… are positional, as safetensors can only hold a dict)."""
    if isinstance(value, torch.Tensor):
        return Inputs((value,))
    if isinstance(value, (tuple, list)):
        return Inputs(_tensors(name, value))
    if isinstance(value, Mapping):
        keys = [str(k) for k in value]
        if not keys:
            raise LoadError(f"{name}: the file holds no tensors")
        tensors = _tensors(name, list(value.values()))
        if all(k.isdigit() for k in keys):
            order = sorted(range(len(keys)), key=lambda i: int(keys[i]))
            return Inputs(tuple(tensors[i] for i in order))
        if not all(k.isidentifier() for k in keys):
            raise LoadError(f"{name}: keyword inputs need names like input_ids, not {keys[:3]}")
        return Inputs((), dict(zip(keys, tensors, strict=True)))
    raise LoadError(f"{name}: inputs must be a tensor, a tuple of tensors or a dict of them, not "
                    f"{type(value).__name__}")


def load_inputs(path: str | Path) -> Inputs:
    """Read sample inputs from a ``.pt``/``.pth`` (weights-only) or ``.safetensors`` file."""
    path = Path(path)
    require_regular_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            value: object = load_file(str(path))
        else:
            value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader error is one clear line: this file is not inputs
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise LoadError(f"{path.name}: cannot read inputs ({type(exc).__name__}: {detail})") from exc
    return inputs_from(path.name, value)


def output_tensors(output: object) -> list[torch.Tensor]:
    """Every floating tensor in a model's output (tensors, tuples, lists, dicts and Hugging Face outputs)."""
    found: list[torch.Tensor] = []
    stack = [output]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.is_floating_point() or item.is_complex():
                found.append(item)
        elif isinstance(item, Mapping):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, (tuple, list)):
            stack.extend(reversed(item))
    return found


def drift(base: Sequence[torch.Tensor], pruned: Sequence[torch.Tensor]) -> float:
    """‖f_pruned(x) − f(x)‖₂ / ‖f(x)‖₂ over every output tensor together (float64)."""
    if len(base) != len(pruned) or any(a.shape != b.shape for a, b in zip(base, pruned, strict=True)):
        raise ValueError("the pruned model's outputs differ in shape from the model's")
    diff = sum(float(torch.linalg.vector_norm((b.double() - a.double()).reshape(-1))) ** 2
               for a, b in zip(base, pruned, strict=True))
    total = sum(float(torch.linalg.vector_norm(a.double().reshape(-1))) ** 2 for a in base)
    return (diff / total) ** 0.5 if total > 0 else (0.0 if diff == 0 else float("inf"))
