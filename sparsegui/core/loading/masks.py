"""Reading mask files for ``custom_from_mask``: .pt, .safetensors, .h5 (SparseGUI's mask exports) or .npy/.npz."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from sparsegui.core.errors import LoadError
from sparsegui.core.loading.budgets import bounded_views, check_memory, size_text
from sparsegui.core.loading.hdf5_files import load_hdf5
from sparsegui.core.loading.paths import require_regular_file
from sparsegui.core.loading.safetensors_files import load_safetensors
from sparsegui.core.loading.sniff import Format, sniff
from sparsegui.core.loading.statedicts import is_state_dict
from sparsegui.core.loading.torch_files import load_torch_file
from sparsegui.core.loading.zip_members import check_members, read_layout


def _npy_bytes(handle: BinaryIO, what: str, filename: str) -> tuple[int, int]:
    """(bytes the array declares, bytes of header) of the .npy stream at ``handle``, read from its header only."""
    try:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = reader(handle)
    except Exception as exc:  # numpy parses the header as a Python literal: SyntaxError, TokenError, MemoryError…
        raise LoadError(f"{filename}: {what} has no readable NumPy header ({exc})") from exc
    if dtype.hasobject:
        raise LoadError(f"{filename}: {what} holds Python objects, not numbers; refused")
    count = 1
    for extent in shape:
        count *= int(extent)
    return count * dtype.itemsize, handle.tell()


def _check_numpy(path: Path, is_npz: bool) -> None:
    """Refuse before reading an array that declares more bytes than its file (or zip member) holds, members that
    expand past the budget for compressed data, and arrays that would not fit the memory available."""
    if not is_npz:
        with path.open("rb") as handle:
            declared, header = _npy_bytes(handle, "the array", path.name)
        held = path.stat().st_size - header
        if declared > held:
            raise LoadError(f"{path.name}: the array declares {size_text(declared)} but the file holds "
                            f"{size_text(held)}; refused")
        check_memory(path.name, "the array takes", declared)
        return
    layout = read_layout(path)
    members = list(layout.members.values())
    check_members(layout, members, path.name)
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for member in members:
                if not member.name.endswith(".npy"):
                    continue
                with archive.open(member.name) as handle:
                    declared, header = _npy_bytes(handle, f"member {member.name!r}", path.name)  # type: ignore[arg-type]
                if declared > member.size - header:
                    raise LoadError(f"{path.name}: member {member.name!r} declares {size_text(declared)} but holds "
                                    f"{size_text(member.size - header)}; refused")
                total += declared
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise LoadError(f"{path.name}: unreadable NumPy file ({type(exc).__name__}: {exc})") from exc
    check_memory(path.name, "its arrays take", total)


def _load_numpy(path: Path, is_npz: bool) -> dict[str, torch.Tensor]:
    _check_numpy(path, is_npz)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"": torch.from_numpy(loaded)}
        with loaded:  # an .npz reads (and fails on) each member only when asked for it
            return {k: torch.from_numpy(loaded[k]) for k in loaded.files}
    except Exception as exc:
        raise LoadError(f"{path.name}: unreadable NumPy file ({type(exc).__name__}: {exc})") from exc


def load_masks(path: str | Path) -> dict[str, torch.Tensor]:
    """Masks keyed by qualified tensor name; a file holding one bare tensor gives ``{"": mask}``."""
    path = Path(path)
    require_regular_file(path, "mask file")
    if not path.is_file():
        raise LoadError(f"mask file {str(path)!r} does not exist")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x93NUMPY") or (head.startswith(b"PK") and path.suffix == ".npz"):
        return _load_numpy(path, is_npz=not head.startswith(b"\x93NUMPY"))
    fmt = sniff(path, "mask file")
    if fmt in (Format.TORCH_ZIP, Format.TORCH_LEGACY):
        obj = load_torch_file(path, fmt, trust=False)
        if isinstance(obj, torch.Tensor):
            return bounded_views({"": obj}, path.name)
        if is_state_dict(obj):
            return bounded_views(obj, path.name)
        raise LoadError(f"{path.name}: a mask file holds a tensor or a dict of tensors keyed by tensor name")
    if fmt is Format.SAFETENSORS:
        return load_safetensors(path)[0]
    if fmt is Format.HDF5:
        return load_hdf5(path)[0]
    raise LoadError(f"{path.name}: {fmt.value} is not a mask file")
