"""Text shared by the module tree and the details view: names, shapes, percentages, hooks, devices."""

from __future__ import annotations

from typing import Any

from torch import nn

from sparsegui.core.inspection import HookInfo


def qualify(module: str, local: str) -> str:
    return f"{module}.{local}" if module else local


def shape_text(shape: Any) -> str:
    return "×".join(str(s) for s in shape) if len(shape) else "scalar"


def percent_text(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def value_text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def method_text(record: dict[str, object]) -> str:
    """``RandomUnstructured(amount=0.3)`` from a :func:`~sparsegui.core.pruned.method_record`."""
    settings = ", ".join(f"{k}={value_text(v)}" for k, v in record.items() if k != "class")
    return f"{record['class']}({settings})"


def hook_text(info: HookInfo) -> str:
    """``forward_pre (weight): PruningContainer → RandomUnstructured(amount=0.3), LnStructured(…)``."""
    if not info.methods:
        return f"{info.kind}: {info.cls}"
    methods = ", ".join(method_text(m) for m in info.methods)
    if info.cls == "PruningContainer":
        return f"{info.kind} ({info.tensor}): PruningContainer → {methods}"
    return f"{info.kind} ({info.tensor}): {methods}"


def module_devices(module: nn.Module, cache: dict[int, frozenset[str]] | None = None) -> frozenset[str]:
    """The devices of the parameters and buffers of ``module`` and its submodules (no tensor data is read);
    ``cache`` (by module id) makes a parent reuse its children's answers."""
    cache = {} if cache is None else cache
    found = cache.get(id(module))
    if found is None:
        devices = {str(t.device) for t in (*module._parameters.values(), *module._buffers.values()) if t is not None}
        for child in module._modules.values():
            if child is not None:
                devices |= module_devices(child, cache)
        found = cache[id(module)] = frozenset(devices)
    return found
