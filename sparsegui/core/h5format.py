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


def read_tensor(dset: h5py.Dataset, mask_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Read a dataset written by :func:`write_tensor`, or any plain numeric dataset."""
    encoding = dset.attrs.get("encoding", "raw")
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    data = dset[()]
    if encoding == "raw" and "dtype" not in dset.attrs:
        array = np.asarray(data)
        if array.dtype.byteorder not in ("=", "|"):
            array = array.astype(array.dtype.newbyteorder("="))
        return torch.from_numpy(np.ascontiguousarray(array))
    shape = json.loads(dset.attrs["shape"])
    dtype = dtype_from_name(str(dset.attrs["dtype"]))
    if encoding == "bits":
        count = int(np.prod(shape)) if shape else 1
        bits = np.unpackbits(np.asarray(data, dtype=np.uint8))[:count]
        mask = torch.from_numpy(bits.astype(np.bool_)).reshape(shape)
        return mask.to(mask_dtype or dtype)
    if encoding == "bytes":
        return torch.from_numpy(np.ascontiguousarray(data)).view(dtype).reshape(shape).clone()
    return torch.from_numpy(np.ascontiguousarray(data)).reshape(shape)
