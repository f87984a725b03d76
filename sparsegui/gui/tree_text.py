"""Text shared by the module tree and the details view: names, shapes, percentages, hooks."""

from __future__ import annotations

from typing import Any

from sparsegui.core.inspection import HookInfo
from sparsegui.core.names import qualify

__all__ = ["count_text", "hook_text", "method_text", "percent_text", "qualify", "shape_text", "value_text"]


def shape_text(shape: Any) -> str:
    return "×".join(str(s) for s in shape) if len(shape) else "scalar"


def count_text(count: int) -> str:
    """``850``, ``60.1 k``, ``124 M``, ``6.74 B``: three significant digits, short enough for a narrow column."""
    for limit, unit in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if count >= limit:
            value = count / limit
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:,.0f} {unit}"
    return str(count)


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
