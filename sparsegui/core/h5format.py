"""SparseGUI's HDF5 layout, shared by the exporter and the loader.

A group per module (``layer1/0/conv1``), a dataset per tensor (``weight``). Root attributes: ``sparsegui_format``,
``sparsegui_version``, ``contents`` and ``key_order`` (JSON list of the state_dict keys in order). Each dataset has
``dtype`` (torch dtype), ``encoding`` and, for state_dict tensors, ``zeros``/``sparsity`` and the JSON pruning
``history``. Masks are bit-packed (``encoding = "bits"``) and gzip-compressed: 1 bit per weight on disk.
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np
import torch

FORMAT_NAME = "sparsegui-hdf5"
FORMAT_VERSION = 1
_NUMPY_SAFE = {
    torch.float16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.uint8, torch.bool, torch.complex64, torch.complex128,
}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r}")
    return dtype


def write_tensor(
    group: h5py.Group, name: str, tensor: torch.Tensor, *, as_mask: bool = False, attrs: dict[str, Any] | None = None
) -> h5py.Dataset:
    """Write ``tensor`` as dataset ``name`` of ``group`` (masks bit-packed and compressed)."""
    tensor = tensor.detach().to("cpu").contiguous()
    shape = list(tensor.shape)
    if as_mask:
        bits = np.packbits(tensor.reshape(-1).ne(0).numpy())
        dset = group.create_dataset(name, data=bits, compression="gzip", compression_opts=4, shuffle=False)
        encoding = "bits"
    elif tensor.dtype in _NUMPY_SAFE:
        dset = group.create_dataset(name, data=tensor.numpy())
        encoding = "raw"
    else:
        raw = tensor.reshape(-1).view(torch.uint8).numpy()
        dset = group.create_dataset(name, data=raw)
        encoding = "bytes"
    dset.attrs["dtype"] = dtype_name(tensor.dtype)
    dset.attrs["shape"] = json.dumps(shape)
    dset.attrs["encoding"] = encoding
    for key, value in (attrs or {}).items():
        dset.attrs[key] = value
    return dset


_FORMAT_ATTRS = ("encoding", "dtype", "shape")


def format_attrs(dset: h5py.Dataset) -> dict[str, str]:
    """The attributes :func:`read_tensor` follows (``encoding``, ``dtype``, ``shape``), read once, as text."""
    attrs = dset.attrs
    out: dict[str, str] = {}
    for name in _FORMAT_ATTRS:
        if name in attrs:
            value = attrs[name]
            out[name] = value.decode() if isinstance(value, bytes) else str(value)
    return out


def _shape(attrs: dict[str, str]) -> list[int]:
    try:
        shape = json.loads(attrs.get("shape", "[]"))
    except (ValueError, RecursionError) as exc:
        raise ValueError("its 'shape' attribute is not JSON") from exc
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                              for n in shape):
        raise ValueError("its 'shape' attribute is not a list of sizes")
    return shape


def _count(shape: list[int]) -> int:
    count = 1
    for extent in shape:
        count *= extent
    return count


def tensor_bytes(dset: h5py.Dataset, attrs: dict[str, str] | None = None) -> int:
    """Bytes the tensor :func:`read_tensor` makes of ``dset`` will take, from its attributes, without reading it.
    Raises ValueError when the attributes contradict the stored data (bits or bytes for a different shape)."""
    attrs = format_attrs(dset) if attrs is None else attrs
    size = int(dset.id.get_space().get_simple_extent_npoints())
    stored = size * dset.id.dtype.itemsize
    encoding = attrs.get("encoding", "raw")
    if encoding == "raw" and "dtype" not in attrs:
        return stored
    dtype = dtype_from_name(attrs.get("dtype", ""))
    count = _count(_shape(attrs))
    if encoding == "bits":
        if count > 8 * size:
            raise ValueError(f"its shape needs {count} bits, it stores {8 * size}")
        return count * dtype.itemsize
    if encoding == "bytes" and count * dtype.itemsize != stored:
        raise ValueError(f"its shape needs {count * dtype.itemsize} bytes, it stores {stored}")
    return stored


def _read_all(dset: h5py.Dataset) -> np.ndarray:
    """The whole dataset as an array (one low-level read for plain simple dataspaces: much cheaper per dataset than
    ``dset[()]`` when a file holds tens of thousands of small ones)."""
    space = dset.id.get_space()
    dtype = dset.id.dtype
    if space.get_simple_extent_type() != h5py.h5s.SIMPLE or dtype.kind not in "biufc" or dtype.names:
        return np.asarray(dset[()])
    array = np.empty(space.shape, dtype=dtype)
    if array.size:
        dset.id.read(h5py.h5s.ALL, h5py.h5s.ALL, array)
    return array


def read_tensor(
    dset: h5py.Dataset, mask_dtype: torch.dtype | None = None, attrs: dict[str, str] | None = None
) -> torch.Tensor:
    """Read a dataset written by :func:`write_tensor`, or any plain numeric dataset (``attrs``: its
    :func:`format_attrs`, when already read)."""
    attrs = format_attrs(dset) if attrs is None else attrs
    encoding = attrs.get("encoding", "raw")
    data = _read_all(dset)
    if encoding == "raw" and "dtype" not in attrs:
        array = data
        if array.dtype.byteorder not in ("=", "|"):
            array = array.astype(array.dtype.newbyteorder("="))
        return torch.from_numpy(np.ascontiguousarray(array))
    shape = _shape(attrs)
    dtype = dtype_from_name(attrs.get("dtype", ""))
    if encoding == "bits":
        count = _count(shape)
        bits = np.unpackbits(np.asarray(data, dtype=np.uint8))[:count]
        mask = torch.from_numpy(bits.astype(np.bool_)).reshape(shape)
        return mask.to(mask_dtype or dtype)
    if encoding == "bytes":
        return torch.from_numpy(np.ascontiguousarray(data)).view(dtype).reshape(shape).clone()
    return torch.from_numpy(np.ascontiguousarray(data)).reshape(shape)
