"""Pruning masks kept compactly: one bit per entry, immutable, shared between the states that hold them.

``torch.nn.utils.prune`` keeps each mask as a buffer in the weight's own dtype (2–4 bytes per entry). SparseGUI keeps
1 bit per entry (bit ``i`` of byte ``i // 8``, little-endian, over the tensor flattened in C order) and produces
torch's buffer only when something needs it (:meth:`BitMask.as_dtype`). Masks are 0/1 by construction: a mask
holding any other value is refused (:func:`~sparsegui.core.maskvalues.check_binary_mask`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from sparsegui.core.maskvalues import check_binary_mask

CHUNK = 1 << 20
"""Entries per step when a mask is read or written piece by piece (a multiple of 8)."""


def _numpy_bool(tensor: torch.Tensor) -> np.ndarray:
    flat = tensor.detach().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    if flat.dtype != torch.bool:
        flat = flat != 0
    return flat.numpy()


def pack(keep: torch.Tensor | np.ndarray) -> np.ndarray:
    """Pack a boolean array (any shape, C order) into bits."""
    array = keep if isinstance(keep, np.ndarray) else _numpy_bool(keep)
    return np.packbits(array.reshape(-1), bitorder="little")


class BitMask:
    """A 0/1 mask of ``shape``: 1 bit per entry. Immutable; :attr:`zeros` (pruned entries) is known at creation."""

    __slots__ = ("_bits", "numel", "shape", "zeros")

    def __init__(self, bits: np.ndarray, shape: tuple[int, ...], zeros: int | None = None) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.numel = math.prod(self.shape)
        if bits.dtype != np.uint8 or bits.ndim != 1 or bits.size != (self.numel + 7) // 8:
            raise ValueError(f"{bits.size} packed bytes do not hold a mask of shape {list(self.shape)}")
        bits.flags.writeable = False
        self._bits = bits
        self.zeros = self.numel - int(np.bitwise_count(bits).sum()) if zeros is None else zeros

    # -- making ----------------------------------------------------------------------------------------------------
    @classmethod
    def from_tensor(cls, mask: torch.Tensor, name: str = "the tensor") -> BitMask:
        """The mask ``mask`` holds (any dtype, any device; refused unless every entry is 0 or 1)."""
        check_binary_mask(name, mask)
        return cls(pack(mask), tuple(mask.shape))

    @classmethod
    def ones(cls, shape: tuple[int, ...] | torch.Size) -> BitMask:
        numel = math.prod(shape)
        bits = np.full((numel + 7) // 8, 0xFF, dtype=np.uint8)
        if numel % 8:
            bits[-1] = (1 << (numel % 8)) - 1
        return cls(bits, tuple(shape), 0)

    # -- reading ---------------------------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return int(self._bits.nbytes)

    @property
    def kept(self) -> int:
        return self.numel - self.zeros

    def bits(self) -> np.ndarray:
        """The packed bytes (read-only)."""
        return self._bits

    def numpy(self) -> np.ndarray:
        """Every entry as a numpy bool array of :attr:`shape` (1 byte per entry)."""
        return np.unpackbits(self._bits, count=self.numel, bitorder="little").view(np.bool_).reshape(self.shape)

    def bool_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Every entry as a bool tensor of :attr:`shape` on ``device`` (the CPU by default)."""
        tensor = torch.from_numpy(self.numpy())
        return tensor if device is None or torch.device(device).type == "cpu" else tensor.to(device)

    def as_dtype(self, dtype: torch.dtype, device: torch.device | str | None = None) -> torch.Tensor:
        """The buffer ``torch.nn.utils.prune`` would hold: 1 and 0 in ``dtype``."""
        return self.bool_tensor(device).to(dtype)

    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Entries ``start:stop`` of the flattened mask as numpy bools."""
        skip = start % 8
        packed = self._bits[start // 8 : (stop + 7) // 8]
        return np.unpackbits(packed, count=stop - start + skip, bitorder="little").view(np.bool_)[skip:]

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, kept)`` for consecutive pieces of the flattened mask."""
        for start in range(0, self.numel, size):
            stop = min(start + size, self.numel)
            yield start, stop, self.chunk(start, stop)

    def at(self, index: tuple[int, ...]) -> bool:
        """Whether the entry at ``index`` is kept."""
        flat = int(np.ravel_multi_index(index, self.shape)) if self.shape else 0
        return bool((int(self._bits[flat // 8]) >> (flat % 8)) & 1)

    def __and__(self, other: BitMask) -> BitMask:
        if other.shape != self.shape:
            raise ValueError(f"masks of shapes {list(self.shape)} and {list(other.shape)} do not combine")
        return BitMask(np.bitwise_and(self._bits, other._bits), self.shape)

    def same_as(self, other: BitMask) -> bool:
        return self.shape == other.shape and bool(np.array_equal(self._bits, other._bits))

    def __repr__(self) -> str:
        return f"BitMask(shape={list(self.shape)}, zeros={self.zeros})"


class BitWriter:
    """Builds a :class:`BitMask` from consecutive pieces of the flattened mask, of any sizes."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        self._parts: list[np.ndarray] = []
        self._carry = np.zeros(0, dtype=np.bool_)
        self._ones = 0

    def append(self, keep: torch.Tensor | np.ndarray) -> None:
        array = keep if isinstance(keep, np.ndarray) else _numpy_bool(keep)
        self._ones += int(np.count_nonzero(array))
        if self._carry.size:
            array = np.concatenate([self._carry, array])
        whole = array.size - array.size % 8
        if whole:
            self._parts.append(np.packbits(array[:whole], bitorder="little"))
        self._carry = array[whole:].copy()

    def finish(self) -> BitMask:
        if self._carry.size:
            self._parts.append(np.packbits(self._carry, bitorder="little"))
        bits = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.uint8)
        return BitMask(bits, self.shape, math.prod(self.shape) - self._ones)
