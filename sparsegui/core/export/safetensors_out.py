"""Writing safetensors files one tensor at a time (``safetensors.torch.save_file`` needs every tensor at once).

The format: an 8-byte little-endian header length, a JSON header mapping each name to its dtype, shape and byte
range in the data section (plus ``__metadata__``), padded with spaces to a multiple of 8, then the data. Tensors
are written in the order given, which is the order readers that follow the file (``safe_open.offset_keys``) see.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import torch

from sparsegui.core.errors import ExportError
from sparsegui.core.export.ahead import read_ahead

DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.complex64: "C64",
}
for _name, _tag in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"), ("float8_e4m3fnuz", "F8_E4M3FNUZ"),
                    ("float8_e5m2fnuz", "F8_E5M2FNUZ"), ("float8_e8m0fnu", "F8_E8M0"), ("float4_e2m1fn_x2", "F4"),
                    ("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64")):
    if isinstance(getattr(torch, _name, None), torch.dtype):
        DTYPES[getattr(torch, _name)] = _tag
PACKED_PAIRS = frozenset(d for d in (getattr(torch, "float4_e2m1fn_x2", None),) if d is not None)
"""Dtypes whose element holds two values: safetensors counts values, so the last dim of the shape doubles."""

WRITE_BLOCK = 64 << 20


def _code(key: str, dtype: torch.dtype) -> str:
    code = DTYPES.get(dtype)
    if code is None:
        raise ExportError(f"safetensors cannot hold dtype {str(dtype).removeprefix('torch.')} (tensor {key!r}); "
                          "export as .pt or .h5")
    return code


def write_tensor_bytes(handle: BinaryIO, tensor: torch.Tensor) -> None:
    """The tensor's bytes in C order, little-endian, in blocks (no second full-size copy for contiguous tensors)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return
    raw = flat.view(torch.uint8) if flat.dtype != torch.bool else flat.to(torch.uint8)
    for start in range(0, raw.numel(), WRITE_BLOCK):
        handle.write(raw[start : start + WRITE_BLOCK].numpy().data)  # the buffer itself: no bytes copy


def header_bytes(entries: Sequence[tuple[str, torch.dtype, Sequence[int]]], metadata: Mapping[str, str]) -> bytes:
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for key, dtype, shape in entries:
        size = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        listed = list(shape)
        if dtype in PACKED_PAIRS and listed:
            listed[-1] *= 2
        header[key] = {"dtype": _code(key, dtype), "shape": listed, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_safetensors(path: Path, keys: Sequence[str], meta: Mapping[str, tuple[torch.dtype, Sequence[int]]],
                      get: Callable[[str], torch.Tensor], metadata: Mapping[str, str],
                      on_tensor: Callable[[int], None] | None = None,
                      stream: Callable[[str], Iterator[torch.Tensor] | None] | None = None) -> None:
    """Write ``keys`` in order; ``meta[key]`` gives each one's dtype and shape up front (for the header) and
    ``get(key)`` the tensor when its turn comes — or ``stream(key)`` its flat pieces, when it has them."""
    header = header_bytes([(k, *meta[k]) for k in keys], metadata)
    with path.open("wb") as handle:
        handle.write(header)
        for index, key in enumerate(keys):
            pieces = stream(key) if stream is not None else None
            if pieces is not None:
                dtype, shape = meta[key]
                written = 0
                for piece in read_ahead(pieces):
                    if piece.dtype != dtype:
                        raise ExportError(f"{key}: expected {dtype}, got {piece.dtype}")
                    write_tensor_bytes(handle, piece)
                    written += piece.numel()
                if written != math.prod(shape):
                    raise ExportError(f"{key}: wrote {written} entries, expected {math.prod(shape)}")
                if on_tensor is not None:
                    on_tensor(index)
                continue
            tensor = get(key)
            dtype, shape = meta[key]
            if tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
                raise ExportError(f"{key}: expected {dtype} {list(shape)}, got {tensor.dtype} {list(tensor.shape)}")
            write_tensor_bytes(handle, tensor)
            if on_tensor is not None:
                on_tensor(index)
