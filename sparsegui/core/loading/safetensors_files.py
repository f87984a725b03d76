"""Reading safetensors files, single or sharded (``*.safetensors.index.json``)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch
from safetensors import SafetensorError, safe_open

from sparsegui.core.errors import LoadError
from sparsegui.core.loading.paths import require_regular_file
from sparsegui.core.loading.sniff import read_json
from sparsegui.core.loading.statedicts import ordered_keys

KEY_ORDER_METADATA = "sparsegui_key_order"


def _recorded_order(text: str | None, filename: str) -> list[str]:
    """The key order SparseGUI recorded in the metadata (a JSON list of names), or [] when there is none."""
    if text is None:
        return []
    try:
        order = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise LoadError(f"{filename}: its {KEY_ORDER_METADATA} metadata is not valid JSON") from exc
    if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
        raise LoadError(f"{filename}: its {KEY_ORDER_METADATA} metadata is not a list of tensor names")
    return order


def load_safetensors(path: Path, copy: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (tensors in the file's order — the order SparseGUI recorded, if it wrote the file —; metadata). The
    tensors are memory-mapped from the file, or with ``copy`` read into memory."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            keys = list(handle.offset_keys() if hasattr(handle, "offset_keys") else handle.keys())
            order = _recorded_order(metadata.get(KEY_ORDER_METADATA), path.name)
            tensors = {k: handle.get_tensor(k) for k in ordered_keys(keys, order)}
            return ({k: t.clone() for k, t in tensors.items()} if copy else tensors), metadata
    except LoadError:
        raise
    except (SafetensorError, OSError, ValueError) as exc:
        raise LoadError(f"{path.name}: {_explain(str(exc))}") from exc
    except BaseException as exc:  # a Rust panic (PanicException) derives from BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise LoadError(f"{path.name}: corrupt safetensors file ({type(exc).__name__}: {exc})") from exc


def load_sharded(index_path: Path, copy: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load every shard an index names, in the index's ``weight_map`` order."""
    require_regular_file(index_path, "shard index")
    try:
        index = read_json(index_path, index_path.stat().st_size, "a shard index")
    except OSError as exc:
        raise LoadError(f"{index_path.name}: unreadable shard index ({exc.strerror or exc})") from exc
    if not isinstance(index, dict) or "weight_map" not in index:
        raise LoadError(f"{index_path.name}: unreadable shard index (no 'weight_map' object)")
    weight_map = index["weight_map"]
    if not isinstance(weight_map, dict):
        raise LoadError(f"{index_path.name}: 'weight_map' is not an object")
    bad = next((k for k, v in weight_map.items() if not isinstance(v, str) or not v), None)
    if bad is not None:
        raise LoadError(f"{index_path.name}: weight_map[{bad!r}] is not a shard file name")
    shards: dict[str, dict[str, torch.Tensor]] = {}
    for shard in dict.fromkeys(weight_map.values()):
        shard_path = require_regular_file(_shard_path(index_path, shard), "safetensors shard")
        if not shard_path.is_file():
            raise LoadError(f"{index_path.name}: shard {shard!r} is missing")
        shards[shard], _ = load_safetensors(shard_path, copy)
    state: dict[str, torch.Tensor] = {}
    for key, shard in weight_map.items():
        if key not in shards[shard]:
            raise LoadError(f"{index_path.name}: {key!r} is not in shard {shard!r}")
        state[key] = shards[shard][key]
    raw_metadata = index.get("metadata")
    check_index(index_path, weight_map, raw_metadata, shards)
    metadata = {str(k): _text(v) for k, v in raw_metadata.items()} if isinstance(raw_metadata, dict) else {}
    return state, metadata


_HEADER_PROBLEMS = (
    ("file not fully covered", "its size does not match its header (truncated, or tensors outside the file)"),
    ("invalid offset", "its header has overlapping or misplaced tensors"),
)


def _explain(message: str) -> str:
    """safetensors' own error in the words of the problem (a truncated shard, overlapping tensors…)."""
    for needle, words in _HEADER_PROBLEMS:
        if needle in message:
            return f"damaged safetensors file: {words}"
    return f"corrupt safetensors file ({message})"


def check_index(index_path: Path, weight_map: dict[str, str], metadata: object,
                shards: dict[str, dict[str, torch.Tensor]]) -> None:
    """What the index says must be what the shards hold: no key in two shards, ``total_size`` (when given) equal
    to the bytes of the tensors the index names."""
    owner: dict[str, str] = {}
    for shard, tensors in shards.items():
        for key in tensors:
            if key in owner:
                raise LoadError(f"{index_path.name}: {key!r} is in shards {owner[key]!r} and {shard!r}")
            owner[key] = shard
    for key, shard in weight_map.items():
        if owner.get(key, shard) != shard:
            raise LoadError(f"{index_path.name}: the index puts {key!r} in {shard!r} but it is in {owner[key]!r}")
    total = metadata.get("total_size") if isinstance(metadata, dict) else None
    if total is not None:
        held = sum(shards[s][k].numel() * shards[s][k].element_size() for k, s in weight_map.items())
        if isinstance(total, bool) or not isinstance(total, int) or total != held:
            raise LoadError(f"{index_path.name}: its total_size ({total!r}) is not the {held:,} bytes of the tensors "
                            "its shards hold: the index does not describe these shards")


def _text(value: object) -> str:
    """A metadata value as text (a string as is; anything else as compact JSON, cut short)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"))[:1000]
    except (ValueError, RecursionError):
        return f"<{type(value).__name__}>"


def _shard_path(index_path: Path, shard: str) -> Path:
    """The shard's path, refusing names that leave the index's folder (``..``, absolute paths).

    The check is on the name, not the resolved path: a shard that is a symlink placed in the folder (the
    Hugging Face cache links ``snapshots/<rev>/*.safetensors`` to ``blobs/``) is followed.
    """
    relative = PurePosixPath(shard.replace("\\", "/"))
    if relative.is_absolute() or PureWindowsPath(shard).drive or ".." in relative.parts or not relative.parts:
        raise LoadError(f"{index_path.name}: shard {shard!r} is outside the index's folder; refused")
    return index_path.parent.joinpath(*relative.parts)
