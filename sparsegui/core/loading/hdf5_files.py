"""Reading HDF5 files: SparseGUI's own layout and plain files whose groups/datasets map to modules/tensors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import torch

from sparsegui.core.errors import LoadError
from sparsegui.core.h5format import FORMAT_NAME, read_tensor
from sparsegui.core.loading.hdf5_heaps import global_heap_problem

_ALLOWED_FILTERS = {"gzip", "lzf", "shuffle", "fletcher32", "scaleoffset"}


_SAFE_ATTRIBUTE_CLASSES = {h5py.h5t.INTEGER, h5py.h5t.FLOAT, h5py.h5t.STRING}


def _check_attributes(obj: h5py.Group | h5py.Dataset, filename: str) -> None:
    """Refuse attributes that are not numbers or strings before any is read: libhdf5 crashes (a segmentation
    fault) reading a damaged variable-length sequence, where a damaged string only fails."""
    for name in obj.attrs:
        kind = obj.attrs.get_id(name).get_type()
        if kind.get_class() == h5py.h5t.ENUM:  # h5py stores numpy bools as an enum of int8
            kind = kind.get_super()
        if kind.get_class() not in _SAFE_ATTRIBUTE_CLASSES:
            where = obj.name if obj.name != "/" else "the root"
            raise LoadError(f"{filename}: attribute {name!r} of {where} is neither a number nor a string; refused")


def _check_dataset(dset: h5py.Dataset, key: str, file_size: int, filename: str) -> None:
    """Refuse datasets that would read other files or more data than the file can hold."""
    _check_attributes(dset, filename)
    if dset.external:
        raise LoadError(f"{filename}: dataset {key!r} reads external files; refused")
    if dset.is_virtual:
        raise LoadError(f"{filename}: dataset {key!r} is a virtual dataset; refused")
    plist = dset.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        filter_id = plist.get_filter(i)[0]
        if filter_id not in (1, 2, 3, 6, 32000) and filter_id not in h5py.filters.encode:
            raise LoadError(f"{filename}: dataset {key!r} needs unknown filter plugin {filter_id}; refused")
    if dset.dtype.kind not in "biufc":
        raise LoadError(f"{filename}: dataset {key!r} holds {dset.dtype}, not numbers")
    declared = _declared_bytes(dset)
    filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    if filters <= _SIZE_KEEPING_FILTERS and declared > file_size:
        raise LoadError(f"{filename}: dataset {key!r} declares {declared} bytes but the file has {file_size}")
    if filters and declared > file_size and dset.id.get_storage_size() == 0:
        raise LoadError(f"{filename}: dataset {key!r} declares {declared} bytes but stores none; refused")
    if declared > 64 * 1024**3:
        raise LoadError(f"{filename}: dataset {key!r} declares {declared} bytes; refused")


_SIZE_KEEPING_FILTERS = {2, 3}  # shuffle, fletcher32: what is stored is at least what is declared


def _declared_bytes(dset: h5py.Dataset) -> int:
    count = 1
    for extent in dset.shape or ():
        count *= int(extent)
    return count * dset.dtype.itemsize


def _memory_budget() -> int:
    """Bytes of memory a load may use: the kernel's MemAvailable (Linux), else physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 64 * 1024**3


def _check_total(items: list[tuple[str, h5py.Dataset]], filename: str) -> None:
    """Every dataset is read into memory: refuse before reading if they cannot fit."""
    total = sum(_declared_bytes(dset) for _, dset in items)
    budget = _memory_budget()
    if total > budget:
        raise LoadError(
            f"{filename}: its datasets declare {total} bytes, more than the {budget} bytes of memory available"
        )


def load_hdf5(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Return (state_dict, root attributes) from an HDF5 file."""
    file_size = path.stat().st_size
    try:
        problem = global_heap_problem(path)
    except (OSError, ValueError) as exc:
        raise LoadError(f"{path.name}: cannot read ({exc})") from exc
    if problem:
        raise LoadError(f"{path.name}: {problem}")
    try:
        with h5py.File(path, "r") as h5:
            _check_attributes(h5, path.name)
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
            ours = attrs.get("sparsegui_format") == FORMAT_NAME
            items: list[tuple[str, h5py.Dataset]] = []

            links: list[str] = []

            def visit(name: str) -> None:
                # raising inside h5py's callback would surface as a SystemError: collect, then raise
                if isinstance(h5.get(name, getlink=True), (h5py.ExternalLink, h5py.SoftLink)):
                    links.append(name)

            h5.visit_links(visit)
            if links:
                raise LoadError(f"{path.name}: {links[0]!r} is a link to elsewhere; refused")

            def collect(name: str, obj: object) -> None:
                if isinstance(obj, h5py.Dataset):
                    items.append((name.replace("/", "."), obj))

            h5.visititems(collect)
            for key, dset in items:
                _check_dataset(dset, key, file_size, path.name)
            _check_total(items, path.name)
            state: dict[str, torch.Tensor] = {}
            for key, dset in items:
                state[key] = read_tensor(dset)
            if ours and "key_order" in attrs:
                order = [k for k in json.loads(str(attrs["key_order"])) if k in state]
                state = {k: state[k] for k in order + [k for k in state if k not in set(order)]}
            return state, attrs
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"{path.name}: unreadable HDF5 file ({type(exc).__name__}: {exc})") from exc
