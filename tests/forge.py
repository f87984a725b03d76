"""Hand-made files for the hostile, broken and fuzz tests: pickle streams written opcode by opcode, zip and legacy
checkpoints laid out like torch's, a small valid file of every format, byte mutations, and a bounded load.

Nothing here runs a pickle: streams are assembled from :mod:`pickle`'s opcode constants.
"""

from __future__ import annotations

import json
import pickle
import random
import signal
import struct
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

from sparsegui.core.errors import LoadError
from sparsegui.core.export.writers import write_state_dict
from sparsegui.core.loading import LoadedModel, load_model

# -- pickle streams, opcode by opcode --------------------------------------------------------------------------------

P = pickle


def op_str(text: str) -> bytes:
    raw = text.encode()
    return P.BINUNICODE + struct.pack("<I", len(raw)) + raw


def op_int(value: int) -> bytes:
    if 0 <= value < 256:
        return P.BININT1 + bytes([value])
    if -(2**31) <= value < 2**31:
        return P.BININT + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return P.LONG1 + bytes([len(raw)]) + raw


def op_global(module: str, name: str) -> bytes:
    return P.GLOBAL + f"{module}\n{name}\n".encode()


def tup(*items: bytes) -> bytes:
    return P.MARK + b"".join(items) + P.TUPLE


def stream(body: bytes, protocol: int = 2) -> bytes:
    """One pickle: PROTO, ``body``, STOP."""
    return P.PROTO + bytes([protocol]) + body + P.STOP


def storage(key: str, numel: int, *, legacy: bool = False, storage_type: str = "FloatStorage") -> bytes:
    """A persistent id naming tensor record ``key`` that declares ``numel`` elements (BINPERSID)."""
    fields = [op_str("storage"), op_global("torch", storage_type), op_str(key), op_str("cpu"), op_int(numel)]
    if legacy:
        fields.append(P.NONE)  # legacy ids carry a view_metadata slot
    return tup(*fields) + P.BINPERSID


def contiguous_stride(size: Sequence[int]) -> list[int]:
    stride, acc = [], 1
    for extent in reversed(size):
        stride.insert(0, acc)
        acc *= extent
    return stride


def rebuild_tensor(
    key: str,
    numel: int,
    size: Sequence[int],
    stride: Sequence[int] | None = None,
    offset: int = 0,
    *,
    legacy: bool = False,
) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`` as torch writes it."""
    stride = contiguous_stride(size) if stride is None else stride
    return (
        op_global("torch._utils", "_rebuild_tensor_v2")
        + P.MARK
        + storage(key, numel, legacy=legacy)
        + op_int(offset)
        + tup(*map(op_int, size))
        + tup(*map(op_int, stride))
        + P.NEWFALSE
        + op_global("collections", "OrderedDict")
        + P.EMPTY_TUPLE
        + P.REDUCE
        + P.TUPLE
        + P.REDUCE
    )


def state_dict_stream(entries: dict[str, bytes]) -> bytes:
    """``{name: <object pushed by the bytes>}`` built with EMPTY_DICT + SETITEM."""
    body = P.EMPTY_DICT
    for name, pushed in entries.items():
        body += op_str(name) + pushed + P.SETITEM
    return stream(body)


def write_torch_zip(path: Path, data_pkl: bytes, records: dict[str, bytes], prefix: str = "archive") -> Path:
    """A zip laid out like ``torch.save``'s: data.pkl, byteorder, data/<key>, version, .data/serialization_id."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/data.pkl", data_pkl)
        archive.writestr(f"{prefix}/byteorder", "little")
        for key, data in records.items():
            archive.writestr(f"{prefix}/data/{key}", data)
        archive.writestr(f"{prefix}/version", "3\n")
        archive.writestr(f"{prefix}/.data/serialization_id", "0123456789")
    return path


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def legacy_bytes(data_pkl: bytes, storages: dict[str, tuple[int, bytes]]) -> bytes:
    """A legacy (pre-zip) torch file: magic, protocol, sys info, the object, storage keys, then each storage as an
    8-byte element count and its bytes."""
    out = stream(op_int(LEGACY_MAGIC)) + stream(op_int(1001)) + stream(P.EMPTY_DICT) + data_pkl
    out += stream(P.EMPTY_LIST + P.MARK + b"".join(op_str(k) for k in storages) + P.APPENDS)
    for numel, data in storages.values():
        out += struct.pack("<q", numel) + data
    return out


def safetensors_bytes(header: dict[str, Any] | bytes, data: bytes, header_len: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data


def split_safetensors(data: bytes) -> tuple[bytes, bytes]:
    """(header JSON bytes, data section) of a safetensors file."""
    (length,) = struct.unpack("<Q", data[:8])
    return data[8 : 8 + length], data[8 + length :]


# -- a small valid file of every format ------------------------------------------------------------------------------

KINDS = ("zip", "legacy", "safetensors", "sharded", "sparsegui_h5", "plain_h5")
SUFFIX = {"zip": ".pt", "legacy": ".pt", "safetensors": ".safetensors", "sharded": ".safetensors.index.json",
          "sparsegui_h5": ".h5", "plain_h5": ".h5"}
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def small_state() -> dict[str, torch.Tensor]:
    """A few tensors of several dtypes, a buffer, and a pruned X_orig/X_mask pair."""
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(3, 4, generator=gen) > 0.5).float()
    return {
        "conv.weight": torch.randn(4, 1, 3, 3, generator=gen),
        "conv.bias": torch.randn(4, generator=gen),
        "bn.running_mean": torch.zeros(4),
        "bn.num_batches_tracked": torch.tensor(3),
        "fc.weight_orig": torch.randn(3, 4, generator=gen),
        "fc.weight_mask": mask,
        "fc.bias": torch.randn(3, generator=gen).half(),
        "head.weight": torch.randn(2, 3, generator=gen).bfloat16(),
    }


def write_valid(folder: Path, kind: str) -> Path:
    """Write the small state in format ``kind`` into ``folder``; returns the path to open."""
    state = small_state()
    path = folder / f"model{SUFFIX[kind]}"
    if kind in ("zip", "legacy"):
        torch.save(state, path, _use_new_zipfile_serialization=kind == "zip")
    elif kind == "safetensors":
        save_file(state, str(path), metadata={"origin": "forge"})
    elif kind == "sharded":
        keys = list(state)
        halves = (keys[: len(keys) // 2], keys[len(keys) // 2 :])
        weight_map = {}
        for shard, part in zip(SHARDS, halves, strict=True):
            save_file({k: state[k] for k in part}, str(folder / shard))
            weight_map.update({k: shard for k in part})
        total = sum(t.numel() * t.element_size() for t in state.values())
        path.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    elif kind == "sparsegui_h5":
        write_state_dict(path, state, masks={"fc.weight_mask"}, contents="state_dict+masks")
    else:
        with h5py.File(path, "w") as h5:
            for key, tensor in state.items():
                array = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
                h5.create_dataset(key.replace(".", "/"), data=array)
            h5.create_dataset("fc/scaled", data=np.arange(6, dtype=">f8").reshape(2, 3), compression="gzip")
    return path


@dataclass
class Corpus:
    """The valid files' bytes: ``files[kind]`` maps file name → bytes (the first one is opened)."""

    files: dict[str, dict[str, bytes]]

    @classmethod
    def build(cls, folder: Path) -> Corpus:
        files: dict[str, dict[str, bytes]] = {}
        for kind in KINDS:
            sub = folder / kind
            sub.mkdir(parents=True, exist_ok=True)
            main = write_valid(sub, kind)
            names = [main.name, *sorted(p.name for p in sub.iterdir() if p != main)]
            files[kind] = {name: (sub / name).read_bytes() for name in names}
        return cls(files)

    def targets(self, kind: str) -> list[str]:
        """Where a mutation can land: a file's raw bytes, or (structure-aware) a zip member / safetensors header
        with the container fixed up around it, so mutations reach the parsers behind the container."""
        if kind == "zip":
            return ["raw", "member:data.pkl", "member:byteorder", "member:data/0"]
        if kind == "safetensors":
            return ["raw", "header"]
        if kind == "sharded":
            return ["file:" + name for name in self.files[kind]]
        return ["raw"]

    def write(self, folder: Path, kind: str, target: str, ops: Sequence[Mutation]) -> Path:
        """Write ``kind``'s files into ``folder`` with ``ops`` applied at ``target``; returns the path to open."""
        folder.mkdir(parents=True, exist_ok=True)
        files = dict(self.files[kind])
        main = next(iter(files))
        if target == "raw":
            files[main] = mutate(files[main], ops)
        elif target.startswith("file:"):
            name = target[len("file:") :]
            files[name] = mutate(files[name], ops)
        elif target.startswith("member:"):
            files[main] = mutate_zip_member(files[main], target[len("member:") :], ops)
        elif target == "header":
            header, data = split_safetensors(files[main])
            files[main] = safetensors_bytes(mutate(header, ops), data)
        else:
            raise ValueError(target)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return folder / main


# -- mutations -------------------------------------------------------------------------------------------------------

OPS = ("flip", "overwrite", "int", "insert", "delete", "truncate")
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1)

Mutation = tuple[str, int, int, int]
"""(operation, position seed, value seed, length): the position is taken modulo the data's length."""


def mutate(data: bytes, ops: Sequence[Mutation]) -> bytes:
    """Apply byte mutations: flip a bit, overwrite/insert a run, write an interesting integer, delete, truncate."""
    out = bytearray(data)
    for op, where, value, length in ops:
        pos = where % (len(out) + 1)
        if op == "flip" and out:
            pos %= len(out)
            out[pos] ^= 1 << (value % 8)
        elif op == "overwrite":
            out[pos : pos + length] = bytes([value % 256]) * length
        elif op == "int":
            number = INTERESTING[value % len(INTERESTING)]
            width = 8 if number >= 2**32 or length % 2 else 4
            out[pos : pos + width] = (number % 2 ** (8 * width)).to_bytes(width, "little")
        elif op == "insert":
            out[pos:pos] = bytes([value % 256]) * length
        elif op == "delete":
            del out[pos : pos + length]
        elif op == "truncate":
            del out[pos:]
    return bytes(out)


def mutate_zip_member(data: bytes, member: str, ops: Sequence[Mutation]) -> bytes:
    """Rewrite a zip with one member's content mutated (the zip itself stays well formed)."""
    import io

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename.endswith("/" + member):
                content = mutate(content, ops)
            dst.writestr(info.filename, content)
    return out.getvalue()


def random_ops(rng: random.Random, max_ops: int = 4) -> list[Mutation]:
    return [
        (rng.choice(OPS), rng.randrange(1 << 20), rng.randrange(256), rng.choice((1, 1, 2, 4, 8, 16, 64)))
        for _ in range(rng.randint(1, max_ops))
    ]


# -- loading under a time bound --------------------------------------------------------------------------------------


class Hang(Exception):
    """A load ran past its time bound."""


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds`` (Unix, main thread only)."""

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def touch_tensors(loaded: LoadedModel) -> None:
    """Read every byte of every tensor (a memory-mapped tensor reaching past its file would crash here)."""
    for tensor in [*loaded.model.parameters(), *loaded.model.buffers()]:
        t = tensor.detach()
        if t.is_quantized:
            t = t.int_repr()
        if t.numel():
            t.contiguous().reshape(-1).view(torch.uint8).sum()


def load_outcome(path: Path, seconds: float = 30.0) -> str:
    """``"loaded"`` or ``"LoadError"``; any other exception (or a hang) propagates. LoadError must be one line."""
    with time_bound(seconds):
        try:
            loaded = load_model(path)
        except LoadError as exc:
            message = str(exc)
            assert message and "\n" not in message, repr(message)
            return "LoadError"
        touch_tensors(loaded)
    return "loaded"
