"""List what a pickle would import, without running it."""

from __future__ import annotations

from pathlib import Path

import torch

from sparsegui.core.loading.budgets import PICKLE_LIMIT
from sparsegui.core.loading.pickle_scan import scan_pickle
from sparsegui.core.loading.zip_members import read_layout, read_member


def pickle_globals(data: bytes, max_streams: int = 16) -> list[str]:
    """Every ``module.name`` the pickle stream(s) in ``data`` would import, in order, without duplicates."""
    return scan_pickle(data, max_streams=max_streams).imports


def unsafe_globals(names: list[str]) -> list[str]:
    """Drop the names torch's weights-only unpickler allows."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = set(_get_allowed_globals())
    except Exception:
        allowed = set()
    for extra in torch.serialization.get_safe_globals():
        qualname = getattr(extra, "__qualname__", None)
        if qualname is not None:
            allowed.add(f"{getattr(extra, '__module__', '')}.{qualname}")
    return [n for n in names if n not in allowed and not n.startswith("torch._utils._rebuild")]


def zip_member_globals(path: Path, suffixes: tuple[str, ...] = (".pkl",)) -> list[str]:
    """What the pickles inside a zip archive would import (TorchScript, .pt2); each member is read within the
    pickle budget."""
    found: list[str] = []
    layout = read_layout(path)
    for name in layout.members:
        if name.endswith(suffixes) and layout.members[name].size < PICKLE_LIMIT:
            found.extend(pickle_globals(read_member(path, layout, name, PICKLE_LIMIT)))
        if "/code/__torch__/" in name and name.endswith(".py"):
            dotted = name.split("/code/", 1)[1][: -len(".py")].replace("/", ".")
            found.append(dotted)
    return list(dict.fromkeys(found))
