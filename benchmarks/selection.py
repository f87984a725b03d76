"""The floor for a streaming magnitude selection: the least a pruning tool must do to prune the ``amount`` smallest
``|w|`` exactly, written as plainly as possible, with no SparseGUI code.

``python -m benchmarks.selection CHECKPOINT [--per-tensor] [--packed]`` memory-maps the checkpoint (a ``.pt``
state_dict or a Hugging Face folder of safetensors shards), takes its 2-D tensors in file order and:

1. finds the k-th smallest key over all of them (or in each one with ``--per-tensor``), where the key of an entry is
   the bit pattern of ``|w|`` (it orders like the value): a histogram of the top 16 bits, chunk by chunk, names the
   bin holding the k-th key; one more pass over that bin's entries (fp32: the low 15 bits) makes it exact (bf16 and
   fp16 keys have 15 bits: one pass is exact);
2. writes each tensor's mask chunk by chunk — ``|w|`` above the threshold is kept; of the entries equal to it the
   first ones in order are pruned until exactly k are — as one numpy bool array per tensor (1 byte per entry; with
   ``--packed`` 1 bit per entry, as SparseGUI keeps them).

Nothing else is held: no copy of a weight, no full-size temporary. The masks equal SparseGUI's (same tie rule).
The last line printed is one JSON object (seconds and memory of the selection alone, and of the whole process).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.memory import Sampler, measure

CHUNK = 1 << 20
KEYS = {torch.float32: (torch.int32, 0x7FFF_FFFF, (15, 0)), torch.bfloat16: (torch.int16, 0x7FFF, (0,)),
        torch.float16: (torch.int16, 0x7FFF, (0,))}


def load_weights(path: Path) -> list[torch.Tensor]:
    """The 2-D tensors of a checkpoint, memory-mapped, in file order."""
    if path.is_dir():
        from safetensors import safe_open

        index = json.loads((path / "model.safetensors.index.json").read_text())
        tensors = []
        for shard in dict.fromkeys(index["weight_map"].values()):
            with safe_open(str(path / shard), framework="pt", device="cpu") as handle:
                tensors += [handle.get_tensor(k) for k in handle.offset_keys()]
    else:
        tensors = list(torch.load(path, mmap=True, weights_only=True).values())
    return [t for t in tensors if t.dim() == 2]


def _keys(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    """The keys of ``tensor``'s entries, chunk by chunk (int32; one scratch buffer reused)."""
    itype, sign_off, _ = KEYS[tensor.dtype]
    flat = tensor.reshape(-1)
    buf = torch.empty(min(CHUNK, flat.numel()), dtype=torch.int32)
    for start in range(0, flat.numel(), CHUNK):
        part = flat[start : start + CHUNK].view(itype)
        keys = buf[: part.numel()]
        torch.bitwise_and(part, sign_off, out=keys)
        yield keys


def threshold(tensors: list[torch.Tensor], k: int) -> tuple[int, int]:
    """The k-th smallest key over ``tensors`` and how many entries equal to it are among the k (k ≥ 1)."""
    shifts = KEYS[tensors[0].dtype][2]
    prefix, need, previous = 0, k, -1
    for shift in shifts:
        hist = torch.zeros(1 << 16, dtype=torch.int64)
        for tensor in tensors:
            for keys in _keys(tensor):
                if previous < 0:
                    hist += torch.bincount(keys >> shift, minlength=1 << 16)
                else:
                    inside = keys[(keys >> previous) == prefix]
                    hist += torch.bincount(inside & ((1 << previous) - 1), minlength=1 << 16)
        cumulative = hist.cumsum(0)
        digit = int((cumulative < need).sum())
        need -= int(cumulative[digit]) - int(hist[digit])
        prefix, previous = (prefix << (previous if previous > 0 else 0)) | digit, shift
    return prefix, need


def write_masks(tensors: list[torch.Tensor], key: int, ties: int, packed: bool) -> list[np.ndarray]:
    """Keep keys above ``key``; prune the first ``ties`` entries equal to it, keep the others."""
    masks = []
    for tensor in tensors:
        out = np.empty((tensor.numel() + 7) // 8 if packed else tensor.numel(), dtype=np.uint8 if packed else bool)
        offset = 0
        for keys in _keys(tensor):
            keep = keys > key
            if ties >= 0:
                equal = keys == key
                count = int(np.count_nonzero(equal.numpy()))
                if count <= ties:
                    ties -= count
                else:
                    keep |= equal & (equal.cumsum(0) > ties)
                    ties = -1  # every later tie is kept
            else:
                keep |= keys == key
            chunk = keep.numpy()
            if packed:
                out[offset // 8 : (offset + chunk.size + 7) // 8] = np.packbits(chunk, bitorder="little")
            else:
                out[offset : offset + chunk.size] = chunk
            offset += chunk.size
        masks.append(out)
    return masks


def select(tensors: list[torch.Tensor], amount: float, packed: bool) -> list[np.ndarray]:
    k = round(amount * sum(t.numel() for t in tensors))
    key, ties = threshold(tensors, k)
    return write_masks(tensors, key, ties, packed)


def run(path: Path, per_tensor: bool, packed: bool, amount: float = 0.5) -> dict[str, Any]:
    process = Sampler().start()
    tensors = load_weights(path)
    with measure() as m:
        if per_tensor:
            masks = [mask for t in tensors for mask in select([t], amount, packed)]
        else:
            masks = select(tensors, amount, packed)
    process.stop()
    kept = sum(int(np.unpackbits(b).sum()) if packed else int(np.count_nonzero(b)) for b in masks)
    numel = sum(t.numel() for t in tensors)
    return {"seconds": m.seconds, "peak_anon": m.peak_anon, "peak_rss": m.peak_rss, "extra_anon": m.extra_anon,
            "extra_rss": m.extra_bytes, "process_peak_anon": process.peak_anon, "tensors": len(tensors),
            "entries": numel, "pruned": numel - kept, "mask_bytes": sum(b.nbytes for b in masks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--per-tensor", action="store_true", help="a threshold per tensor (l1_unstructured on each)")
    parser.add_argument("--packed", action="store_true", help="masks of 1 bit per entry instead of 1 byte")
    parser.add_argument("--amount", type=float, default=0.5)
    args = parser.parse_args()
    start = time.perf_counter()
    result = run(args.checkpoint, args.per_tensor, args.packed, args.amount)
    result["total_s"] = time.perf_counter() - start
    print(json.dumps(result))


if __name__ == "__main__":
    main()
