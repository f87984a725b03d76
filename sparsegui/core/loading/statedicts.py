"""Finding the state_dict inside a loaded object, and normalising its keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sparsegui.core.errors import LoadError

PREFERRED_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "weights",
    "params",
)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
MAX_DEPTH = 3

StateDict = dict[str, torch.Tensor]


def ordered_keys(keys: list[str], order: list[str]) -> list[str]:
    """``keys`` in a recorded ``order`` (names it lacks dropped), then the keys the order does not name, in their own
    order. Linear in the number of keys: each membership test is against a set built once."""
    present, recorded = set(keys), set(order)
    return [k for k in dict.fromkeys(order) if k in present] + [k for k in keys if k not in recorded]


def is_state_dict(obj: object) -> bool:
    """A non-empty mapping of string keys to tensors."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def find_state_dicts(obj: object, path: str = "", depth: int = 0) -> list[tuple[str, Mapping[str, Any]]]:
    """Every state_dict in ``obj`` (a training checkpoint) with its ``"/"``-joined key path, in file order."""
    if is_state_dict(obj):
        assert isinstance(obj, Mapping)
        return [(path, obj)]
    found: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(obj, Mapping) and depth < MAX_DEPTH:
        for key, value in obj.items():
            if isinstance(key, str):
                found.extend(find_state_dicts(value, f"{path}/{key}" if path else key, depth + 1))
    return found


def _rank(path: str) -> tuple[int, int]:
    parts = path.split("/")
    leaf = parts[-1]
    penalty = 1 if any(p in ("ema", "optimizer", "optim", "teacher") for p in parts) else 0
    try:
        preferred = PREFERRED_KEYS.index(leaf)
    except ValueError:
        preferred = len(PREFERRED_KEYS)
    return penalty, preferred


def describe(obj: object) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {list(obj.shape)}, not a model"
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:6]]
        more = "…" if len(obj) > 6 else ""
        return f"a dict with no tensors to prune (keys: {', '.join(keys)}{more})" if obj else "an empty dict"
    return f"a {type(obj).__name__}, not a model or state_dict"


def choose_state_dict(obj: object, key: str | None, filename: str) -> tuple[str, Mapping[str, Any], list[str]]:
    """Pick the state_dict at ``key`` or the obvious one; returns (key, state_dict, all candidate keys)."""
    candidates = find_state_dicts(obj)
    names = [path for path, _ in candidates]
    if not candidates:
        raise LoadError(f"{filename}: holds {describe(obj)}")
    if key is not None:
        for path, state in candidates:
            if path == key:
                return path, state, names
        raise LoadError(f"{filename}: no state_dict at key {key!r}; candidates: {', '.join(map(repr, names))}")
    best = min(range(len(candidates)), key=lambda i: (*_rank(candidates[i][0]), -len(candidates[i][1]), i))
    return candidates[best][0], candidates[best][1], names


def strip_wrapper_prefix(state: Mapping[str, Any]) -> tuple[StateDict, str]:
    """Remove DataParallel/DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) prefixes shared by all keys."""
    prefix = ""
    keys = list(state)
    changed = True
    while changed:
        changed = False
        for candidate in WRAPPER_PREFIXES:
            full = prefix + candidate
            if keys and all(k.startswith(full) and len(k) > len(full) for k in keys):
                prefix = full
                changed = True
    return {k[len(prefix) :]: v for k, v in state.items()}, prefix


def check_dense(state: Mapping[str, torch.Tensor], filename: str) -> None:
    """Refuse tensors that hold no data here (meta) or are not plain dense arrays (sparse, nested layouts)."""
    for key, tensor in state.items():
        if tensor.is_meta:
            raise LoadError(f"{filename}: tensor {key!r} holds no data (saved on the meta device)")
        if tensor.layout is not torch.strided or tensor.is_nested:
            layout = str(tensor.layout).removeprefix("torch.")
            raise LoadError(f"{filename}: tensor {key!r} is stored as {layout}, not a dense tensor; refused")


def split_pruned(state: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """Split ``X_orig``/``X_mask`` pairs (a state_dict saved while pruned) into ``X`` and a mask for ``X``.

    Returns the clean state_dict (``X`` in the place of ``X_orig``) and the masks keyed by ``X``.
    """
    clean: StateDict = {}
    masks: StateDict = {}
    for key, tensor in state.items():
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in state:
            clean[key[: -len("_orig")]] = tensor
        elif key.endswith("_mask") and key[: -len("_mask")] + "_orig" in state:
            masks[key[: -len("_mask")]] = tensor
        else:
            clean[key] = tensor
    return clean, masks
