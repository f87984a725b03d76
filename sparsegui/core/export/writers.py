"""File writers chosen by extension: ``.pt``/``.pth``/``.bin`` (torch), ``.safetensors``, ``.h5``/``.hdf5``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import torch
from safetensors import safe_open

from sparsegui import __version__
from sparsegui.core.errors import ExportError
from sparsegui.core.export import torch_out
from sparsegui.core.export.atomic import atomic_write
from sparsegui.core.export.safetensors_out import write_safetensors
from sparsegui.core.export.state import LazyTensors
from sparsegui.core.h5format import FORMAT_NAME, FORMAT_VERSION, write_tensor
from sparsegui.core.loading.safetensors_files import KEY_ORDER_METADATA
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report

EXTENSIONS = {".pt": "torch", ".pth": "torch", ".bin": "torch", ".safetensors": "safetensors",
              ".h5": "hdf5", ".hdf5": "hdf5"}

TensorAttrs = Mapping[str, Mapping[str, Any]]


def format_for(path: Path) -> str:
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise ExportError(f"{path.name}: unknown export format {path.suffix!r}; use {', '.join(EXTENSIONS)}")
    return fmt


def _write_torch(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    try:
        torch_out.save(str(path), state)  # products computed as the writer reaches them
    except RuntimeError:
        # torch's file writer reports a full disk as "unexpected pos …"; written through a Python file, the same
        # failure carries its OSError (ENOSPC, EFBIG): write again that way to report the real cause
        with path.open("wb") as handle:
            try:
                torch_out.save(handle, state)
            except RuntimeError as exc:
                if isinstance(exc.__context__, OSError):
                    raise exc.__context__ from exc
                raise


def _verify_torch(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    _same_keys(path, list(loaded), state)


def _write_safetensors(path: Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Tensor by tensor: a pruned tensor's product exists only while it is written."""
    meta = {"format": "pt", "producer": f"sparsegui {__version__}", KEY_ORDER_METADATA: json.dumps(list(state))}
    meta.update(metadata)
    keys = list(state)
    if isinstance(state, LazyTensors):
        shapes = {k: (state.info(k).dtype, state.info(k).shape) for k in keys}
        write_safetensors(path, keys, shapes, state.__getitem__, meta, stream=state.stream)
        return
    shapes = {k: (state[k].dtype, tuple(state[k].shape)) for k in keys}
    write_safetensors(path, keys, shapes, state.__getitem__, meta)


def _verify_safetensors(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    with safe_open(str(path), framework="pt") as handle:
        _same_keys(path, list(handle.keys()), state)


def _write_hdf5(
    path: Path, state: Mapping[str, torch.Tensor], attrs: TensorAttrs, contents: str, masks: set[str]
) -> None:
    places = hdf5_places(path, list(state))
    with h5py.File(path, "w") as h5:
        h5.attrs["sparsegui_format"] = FORMAT_NAME
        h5.attrs["sparsegui_version"] = FORMAT_VERSION
        h5.attrs["producer"] = f"sparsegui {__version__}"
        h5.attrs["contents"] = contents
        h5.attrs["key_order"] = json.dumps(list(state))
        for key, tensor in state.items():
            group_path, name = places[key]
            group = h5.require_group(group_path) if group_path else h5
            tensor_attrs = {**attrs.get(key, {}), "key": key}
            write_tensor(group, name, tensor, as_mask=key in masks, attrs=tensor_attrs)


def _escape(part: str) -> str:
    """A key part as an HDF5 link name: ``%`` and ``/`` percent-encoded, so distinct parts stay distinct."""
    return part.replace("%", "%25").replace("/", "%2F")


def hdf5_places(path: Path, keys: list[str]) -> dict[str, tuple[str, str]]:
    """Where each key goes: (group path, dataset name), a group per dotted module. Torch keys may hold ``/`` (a
    ``ModuleDict`` name): it is escaped in the path and the real key is stored in the dataset's ``key`` attribute,
    so the loader gives back exactly the keys written. Keys HDF5 cannot hold apart (an empty part, or a tensor
    where another key needs a group) are refused before anything is written."""
    places: dict[str, tuple[str, str]] = {}
    datasets: dict[str, str] = {}
    groups: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        if any(part in ("", ".") for part in parts):
            raise ExportError(f"{path.name}: tensor key {key!r} has an empty part; HDF5 cannot hold it")
        escaped = [_escape(part) for part in parts]
        full = "/".join(escaped)
        for depth in range(1, len(escaped)):
            groups.setdefault("/".join(escaped[:depth]), key)
        datasets[full] = key
        places[key] = ("/".join(escaped[:-1]), escaped[-1])
    clash = next((full for full in datasets if full in groups), None)
    if clash is not None:
        raise ExportError(
            f"{path.name}: tensor keys {datasets[clash]!r} and {groups[clash]!r} cannot both be stored in HDF5 (the "
            "first would be a dataset where the second needs a group)"
        )
    return places


def _verify_hdf5(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    with h5py.File(path, "r") as h5:
        _same_keys(path, json.loads(h5.attrs["key_order"]), state)


def _same_keys(path: Path, written: list[str], state: Mapping[str, torch.Tensor]) -> None:
    if sorted(written) != sorted(state):
        raise ExportError(f"{path.name}: the written file does not hold the expected tensors")


def write_state_dict(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    *,
    attrs: TensorAttrs | None = None,
    metadata: Mapping[str, str] | None = None,
    masks: set[str] | None = None,
    contents: str = "state_dict",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Write ``state`` atomically in the format the extension names, then check it reads back. A cancel (checked
    before writing and before the final rename) removes the temporary file; the target is left as it was."""
    path = Path(path)
    fmt = format_for(path)
    if fmt == "hdf5":
        hdf5_places(path, list(state))  # keys HDF5 cannot hold apart are refused before anything is written
    writers: dict[str, tuple[Callable[[Path], None], Callable[[Path], None]]] = {
        "torch": (lambda p: _write_torch(p, state), lambda p: _verify_torch(p, state)),
        "safetensors": (lambda p: _write_safetensors(p, state, metadata or {}),
                        lambda p: _verify_safetensors(p, state)),
        "hdf5": (lambda p: _write_hdf5(p, state, attrs or {}, contents, masks or set()),
                 lambda p: _verify_hdf5(p, state)),
    }
    write, verify = writers[fmt]

    def write_step(tmp: Path) -> None:
        check(cancel)
        report(progress, 0.1, f"writing {path.name}")
        write(tmp)

    def verify_step(tmp: Path) -> None:
        check(cancel)
        report(progress, 0.8, f"reading {path.name} back")
        verify(tmp)
        check(cancel)
        report(progress, 1.0, f"wrote {path.name}")

    return atomic_write(path, write_step, verify_step)


def write_masks(path: str | Path, masks: Mapping[str, torch.Tensor], progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None) -> Path:
    """Write masks alone (bool tensors keyed by qualified tensor name); HDF5 bit-packs them."""
    return write_state_dict(path, masks, masks=set(masks), contents="masks", progress=progress, cancel=cancel)
