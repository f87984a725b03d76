"""Reading HDF5 files: SparseGUI's own layout and plain files whose groups/datasets map to modules/tensors.

A dataset's key is its path with ``/`` read as ``.`` (``/fc/weight`` is ``fc.weight``), or, in SparseGUI's own files,
the ``key`` attribute the writer stored (torch keys may hold ``/``). Two datasets that map to one key are refused as
ambiguous: nothing is merged or renamed. Every dataset is read into memory, so the file is refused before any read
when the datasets would not fit the memory available, or when compressed or never-written data would expand past
the budgets of :mod:`~sparsegui.core.loading.budgets`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import torch

from sparsegui.core.errors import LoadError
from sparsegui.core.h5format import FORMAT_NAME, format_attrs, read_tensor, tensor_bytes
from sparsegui.core.loading import budgets
from sparsegui.core.loading.hdf5_heaps import global_heap_problem
from sparsegui.core.loading.statedicts import ordered_keys

_SAFE_ATTRIBUTE_CLASSES = {h5py.h5t.INTEGER, h5py.h5t.FLOAT, h5py.h5t.STRING}
_SIZE_KEEPING_FILTERS = {2, 3}  # shuffle, fletcher32: what is stored is at least what is declared
MAX_DATASET_BYTES = 64 * 1024**3


def _memory_budget() -> int:
    """Bytes of memory a load may use (see :func:`sparsegui.core.loading.budgets.memory_budget`)."""
    return budgets.memory_budget()


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


@dataclass
class _Dataset:
    """One dataset and the facts the checks need, each read from the file once."""

    name: str
    dset: h5py.Dataset
    key: str
    attrs: dict[str, str]
    filters: set[int]
    declared: int
    chunk: int
    """Bytes of one chunk (0 when not chunked): libhdf5 reads whole chunks, so a chunk larger than the dataset
    costs its full size."""

    @property
    def stored(self) -> int:
        return int(self.dset.id.get_storage_size())


def _open(h5: h5py.File, name: str, ours: bool, filename: str) -> _Dataset:
    dset = h5py.Dataset(h5py.h5d.open(h5.id, name.encode()))
    _check_attributes(dset, filename)
    attrs = format_attrs(dset)
    plist = dset.id.get_create_plist()
    filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    itemsize = dset.id.dtype.itemsize
    declared = int(dset.id.get_space().get_simple_extent_npoints()) * itemsize
    chunk = 0
    if plist.get_layout() == h5py.h5d.CHUNKED:
        chunk = itemsize
        for extent in plist.get_chunk():
            chunk *= int(extent)
    return _Dataset(name, dset, _key(name, dset, ours, filename), attrs, filters, declared, chunk)


def _check_dataset(entry: _Dataset, file_size: int, filename: str) -> None:
    """Refuse datasets that would read other files or more data than the file can hold."""
    dset, key, filters, declared = entry.dset, entry.key, entry.filters, entry.declared
    plist = dset.id.get_create_plist()
    if plist.get_external_count():
        raise LoadError(f"{filename}: dataset {key!r} reads external files; refused")
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise LoadError(f"{filename}: dataset {key!r} is a virtual dataset; refused")
    for filter_id in sorted(filters):
        if filter_id not in (1, 2, 3, 6, 32000) and filter_id not in h5py.filters.encode:
            raise LoadError(f"{filename}: dataset {key!r} needs unknown filter plugin {filter_id}; refused")
    if dset.id.dtype.kind not in "biufc":
        raise LoadError(f"{filename}: dataset {key!r} holds {dset.id.dtype}, not numbers")
    if filters <= _SIZE_KEEPING_FILTERS and declared > file_size:
        raise LoadError(f"{filename}: dataset {key!r} declares {declared} bytes but the file has {file_size}")
    if filters and declared > file_size and entry.stored == 0:
        raise LoadError(f"{filename}: dataset {key!r} declares {declared} bytes but stores none; refused")
    if max(declared, entry.chunk) > MAX_DATASET_BYTES:
        raise LoadError(f"{filename}: dataset {key!r} declares {max(declared, entry.chunk)} bytes; refused")


def _check_budgets(entries: list[_Dataset], filename: str) -> None:
    """Refuse before reading when compressed or unwritten data would expand past the budget, or when what reading
    takes (the tensors, plus one chunk in flight) would not fit the memory available."""
    budgets.check_expansion(
        filename, ((f"dataset {e.key!r}", max(e.declared, e.chunk), e.stored) for e in entries)
    )
    total = 0
    for entry in entries:
        try:
            total += max(entry.declared, tensor_bytes(entry.dset, entry.attrs))
        except ValueError as exc:
            raise LoadError(f"{filename}: dataset {entry.key!r} cannot be read as a tensor ({exc})") from exc
    total += max((e.chunk for e in entries), default=0)
    budgets.check_memory(filename, "its datasets declare", total, _memory_budget())


def _key(name: str, dset: h5py.Dataset, ours: bool, filename: str) -> str:
    """The state_dict key of the dataset at ``name``: its ``key`` attribute in SparseGUI's own files, else its path
    with ``/`` read as ``.``."""
    if ours and "key" in dset.attrs:
        value = dset.attrs["key"]
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if not isinstance(value, str) or not value:
            raise LoadError(f"{filename}: dataset {'/' + name!r} has a 'key' attribute that is not a name; refused")
        return value
    return name.replace("/", ".")


def _check_unambiguous(entries: list[_Dataset], filename: str) -> None:
    """Two datasets mapping to one key are refused as ambiguous, never merged."""
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.key in seen:
            raise LoadError(
                f"{filename}: datasets {'/' + seen[entry.key]!r} and {'/' + entry.name!r} both map to tensor key "
                f"{entry.key!r}; refused as ambiguous"
            )
        seen[entry.key] = entry.name


def _recorded_order(text: object, filename: str) -> list[str]:
    try:
        order = json.loads(str(text))
    except (ValueError, RecursionError) as exc:
        raise LoadError(f"{filename}: its key_order attribute is not valid JSON") from exc
    if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
        raise LoadError(f"{filename}: its key_order attribute is not a list of tensor names")
    return order


def _walk(h5: h5py.File, filename: str) -> list[str]:
    """Every dataset's path, in the file's (name) order; a soft or external link anywhere is refused. Uses the
    low-level visitors: the high-level ones cost a lookup per name, seconds for 20,000 datasets."""
    links: list[str] = []
    h5.id.links.visit(lambda name, info: links.append(name.decode()) if info.type != h5py.h5l.TYPE_HARD else None,
                      info=True)
    if links:
        raise LoadError(f"{filename}: {links[0]!r} is a link to elsewhere; refused")
    names: list[str] = []
    h5py.h5o.visit(h5.id, lambda name, info: names.append(name.decode()) if info.type == h5py.h5o.TYPE_DATASET
                   else None, info=True)
    return names


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
            entries = [_open(h5, name, ours, path.name) for name in _walk(h5, path.name)]
            _check_unambiguous(entries, path.name)
            for entry in entries:
                _check_dataset(entry, file_size, path.name)
            _check_budgets(entries, path.name)
            state = {e.key: read_tensor(e.dset, attrs=e.attrs) for e in entries}
            if ours and "key_order" in attrs:
                order = _recorded_order(attrs["key_order"], path.name)
                state = {k: state[k] for k in ordered_keys(list(state), order)}
            return state, attrs
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"{path.name}: unreadable HDF5 file ({type(exc).__name__}: {exc})") from exc
