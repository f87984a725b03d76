"""More hand-made files for the loader tests: zip archives laid out byte by byte (duplicate names, overlapping
members, lying sizes), torch checkpoints built from them, deflated members streamed from zeros, and loading in a
child process to measure its memory."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# -- zip archives byte by byte ---------------------------------------------------------------------------------------


@dataclass
class RawMember:
    """A zip member as written by :func:`raw_zip`: ``data`` as stored (deflated already when ``method`` is 8).
    ``local=False`` writes only a directory entry, pointing at ``offset``; ``listed=False`` only the local header and
    data; ``local_stored``/``dir_stored`` put another stored size in the local header/the directory; ``flags`` bit 0
    marks encryption."""

    name: str
    data: bytes
    size: int
    crc: int
    method: int = 0
    flags: int = 0x800
    local_stored: int | None = None
    dir_stored: int | None = None
    offset: int | None = None
    local: bool = True
    listed: bool = True

    @classmethod
    def stored(cls, name: str, payload: bytes, **kwargs: Any) -> RawMember:
        return cls(name, payload, len(payload), zlib.crc32(payload), **kwargs)

    @classmethod
    def deflated(cls, name: str, payload: bytes, **kwargs: Any) -> RawMember:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return cls(name, packer.compress(payload) + packer.flush(), len(payload), zlib.crc32(payload), method=8,
                   **kwargs)


def raw_zip(members: Sequence[RawMember]) -> bytes:
    """A zip archive laid out exactly as ``members`` say (local headers, data, directory, end record), so tests can
    build what no zip library writes: duplicate names, overlaps, lying sizes."""
    out = bytearray()
    offsets: list[int] = []
    for member in members:
        offsets.append(len(out))
        if not member.local:
            continue
        name = member.name.encode()
        stored = len(member.data) if member.local_stored is None else member.local_stored
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, member.flags, member.method, 0, 0x21, member.crc,
                           stored, member.size, len(name), 0) + name + member.data
    directory = bytearray()
    listed = [(m, offset) for m, offset in zip(members, offsets, strict=True) if m.listed]
    for member, offset in listed:
        name = member.name.encode()
        where = member.offset if member.offset is not None else offset
        stored = len(member.data) if member.dir_stored is None else member.dir_stored
        directory += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, member.flags, member.method, 0, 0x21,
                                 member.crc, stored, member.size, len(name), 0, 0, 0, 0, 0, where) + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(listed), len(listed), len(directory), len(out), 0)
    return bytes(out + directory + end)


def torch_members(data_pkl: bytes, records: dict[str, bytes], prefix: str = "archive",
                  deflate: Sequence[str] = ()) -> list[RawMember]:
    """The members of a torch zip checkpoint; those whose name ends with one of ``deflate`` are compressed."""
    files = [("data.pkl", data_pkl), ("byteorder", b"little"),
             *((f"data/{key}", data) for key, data in records.items()), ("version", b"3\n")]
    members = []
    for name, payload in files:
        make = RawMember.deflated if any(name.endswith(d) for d in deflate) else RawMember.stored
        members.append(make(f"{prefix}/{name}", payload))
    return members


def write_zeros_member(archive: zipfile.ZipFile, name: str, nbytes: int, header: bytes = b"") -> None:
    """Add member ``name``: ``header`` then zeros up to ``nbytes``, deflated as it streams (never held in memory)."""
    block = bytes(1 << 20)
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as handle:
        handle.write(header)
        left = nbytes - len(header)
        while left > 0:
            handle.write(block[: min(left, len(block))])
            left -= len(block)


# -- loading in a child process, to measure its memory ---------------------------------------------------------------

_CHILD = """
import json, resource, sys
from pathlib import Path
from sparsegui.core.errors import LoadError
from sparsegui.core.loading import load_model
from sparsegui.core.loading.masks import load_masks
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
results = []
for what, path in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        (load_masks if what == "masks" else load_model)(Path(path))
        results.append({"outcome": "loaded", "message": ""})
    except LoadError as exc:
        results.append({"outcome": "LoadError", "message": str(exc)})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"results": results, "growth_mb": (peak - before) / 1024}))
"""


def load_in_child(paths: Sequence[tuple[str, Path]], timeout: float = 120) -> dict[str, Any]:
    """Open each ``(what, path)`` (``what``: "model" or "masks") in one fresh Python process; returns each outcome
    and message, and how much the process's peak resident memory grew over all of them (MB, after the imports)."""
    root = Path(__file__).resolve().parents[1]
    args = [str(item) for pair in paths for item in pair]
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, cwd=root,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
