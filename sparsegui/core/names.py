"""Qualified names: ``"layer1.0.conv1.weight"`` is module ``"layer1.0.conv1"``, local tensor ``"weight"``."""

from __future__ import annotations


def qualify(module: str, local: str) -> str:
    """``("conv1", "weight")`` → ``"conv1.weight"``; the root module is ``""``."""
    return f"{module}.{local}" if module else local


def split(qualname: str) -> tuple[str, str]:
    """``"conv1.weight"`` → ``("conv1", "weight")``; ``"weight"`` → ``("", "weight")``."""
    module, _, local = qualname.rpartition(".")
    return module, local


def parent(path: str) -> str:
    return path.rpartition(".")[0]


def ancestors(path: str) -> list[str]:
    """``"a.b.c"`` → ``["a.b.c", "a.b", "a", ""]``."""
    found = [path]
    while path:
        path = parent(path)
        found.append(path)
    return found


def base_name(local: str) -> str:
    """``"weight_orig"``/``"weight_mask"`` → ``"weight"``; anything else unchanged."""
    for suffix in ("_orig", "_mask"):
        if local.endswith(suffix):
            return local[: -len(suffix)]
    return local
