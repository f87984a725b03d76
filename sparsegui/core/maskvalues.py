"""Masks hold 0 and 1 only: a check for masks that come from files (``custom_from_mask``, mask files, ``*_mask``).

torch multiplies the weight by the mask as given: a 0.5 halves weights instead of pruning them, a 2 doubles them,
NaN or Inf poisons them, and the "sparsity" SparseGUI reports (counting zeros) no longer says what the model does.
"""

from __future__ import annotations

import math

import torch

from sparsegui.core.errors import PruneError

# Entries compared at a time: bounds the temporary boolean tensors to a few tens of MB whatever the mask's size.
CHUNK = 1 << 24


def _position(index: int, shape: torch.Size) -> str:
    if len(shape) <= 1:
        return f"[{index}]"
    coords = []
    for size in reversed(shape):
        coords.append(index % size)
        index //= size
    return "[" + ", ".join(map(str, reversed(coords))) + "]"


def _show(value: float | int | bool) -> str:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return repr(value)


def check_binary_mask(name: str, mask: torch.Tensor) -> None:
    """Refuse a mask holding anything but 0 and 1 (any dtype: bool, integer, floating), naming the tensor and the
    first bad value and where it is. Reads the mask in chunks of :data:`CHUNK` entries; changes nothing."""
    if not isinstance(mask, torch.Tensor):
        raise PruneError(f"mask for {name}: not a tensor ({type(mask).__name__})")
    if mask.layout != torch.strided:
        raise PruneError(f"mask for {name}: a {str(mask.layout).removeprefix('torch.')} tensor; a mask is dense")
    if mask.dtype == torch.bool:
        return
    if mask.is_complex() or mask.is_quantized or mask.device.type == "meta":
        raise PruneError(f"mask for {name}: {mask.dtype} on {mask.device.type} cannot be a mask of 0 and 1")
    flat = mask.detach().reshape(-1)
    for start in range(0, flat.numel(), CHUNK):
        chunk = flat[start:start + CHUNK]
        bad = (chunk != 0) & (chunk != 1)
        if bool(bad.any()):
            offset = int(bad.to(torch.uint8).argmax())
            value = chunk[offset].item()
            where = _position(start + offset, mask.shape)
            raise PruneError(f"mask for {name}: holds {_show(value)} at {where}; a mask may hold only 0 and 1")
