"""Check a zip archive's layout before any member is read or memory-mapped (torch checkpoints, ``.npz`` files).

torch memory-maps a checkpoint's tensor records at the offsets its zip reader finds; Python's :mod:`zipfile` and
numpy read members by name. Anything that makes readers disagree, or makes a record's bytes mean something else,
is refused: two members with one name, members whose data overlap or run past the archive's data, a local header
that disagrees with the central directory, encryption, and compression methods other than stored and deflate.
Deflated members are legal (``zip -r`` of an unpacked checkpoint makes them) but must never be memory-mapped, and
their expansion is budgeted (:mod:`sparsegui.core.loading.budgets`).
"""

from __future__ import annotations

import itertools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sparsegui.core.errors import LoadError
from sparsegui.core.loading.budgets import check_expansion, size_text

_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # signature … name length, extra length: 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"
_ZIP64_EXTRA = 0x0001
_READABLE = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


@dataclass(frozen=True)
class Member:
    """One member: where its data lie in the file, how many bytes are stored and how many it gives once read."""

    name: str
    header_offset: int
    data_offset: int
    stored: int
    size: int
    method: int

    @property
    def compressed(self) -> bool:
        return self.method != zipfile.ZIP_STORED


@dataclass(frozen=True)
class ZipLayout:
    file_size: int
    members: dict[str, Member]

    def under(self, prefix: str) -> list[Member]:
        return [m for name, m in self.members.items() if name.startswith(prefix)]


def _zip64_sizes(extra: bytes, stored: int, size: int) -> tuple[int, int]:
    """(stored, size) with the 32-bit fields set to 0xFFFFFFFF replaced from the zip64 extra field, which holds
    only those, the uncompressed size first."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == _ZIP64_EXTRA:
            values = iter(struct.unpack_from(f"<{min(length, len(extra) - at - 4) // 8}Q", extra, at + 4))
            if size == 0xFFFFFFFF:
                size = next(values, size)
            if stored == 0xFFFFFFFF:
                stored = next(values, stored)
            break
        at += 4 + length
    return stored, size


def _member(handle: BinaryIO, info: zipfile.ZipInfo, end: int, filename: str) -> Member:
    name = info.filename
    if info.flag_bits & 0x1:
        raise LoadError(f"{filename}: zip member {name!r} is encrypted; refused")
    if info.compress_type not in _READABLE:
        raise LoadError(
            f"{filename}: zip member {name!r} uses compression method {info.compress_type} (only stored and deflate "
            "are read); refused"
        )
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise LoadError(
            f"{filename}: zip member {name!r} is stored uncompressed but declares {info.file_size} bytes and holds "
            f"{info.compress_size}; refused"
        )
    handle.seek(info.header_offset)
    raw = handle.read(_LOCAL.size)
    if len(raw) < _LOCAL.size:
        raise LoadError(f"{filename}: zip member {name!r} starts past the end of the file; refused")
    signature, _version, flags, method, _t, _d, _crc, stored, size, name_len, extra_len = _LOCAL.unpack(raw)
    local_name = handle.read(name_len)
    extra = handle.read(extra_len)
    if signature != _LOCAL_SIGNATURE:
        raise LoadError(f"{filename}: zip member {name!r} has no local header where the directory says; refused")
    decoded = local_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
    if decoded != info.orig_filename or method != info.compress_type:
        raise LoadError(f"{filename}: zip member {name!r}'s local header disagrees with the directory; refused")
    if not flags & 0x8:  # sizes are in the local header (else in a data descriptor after the data)
        stored, size = _zip64_sizes(extra, stored, size)
        if (stored, size) != (info.compress_size, info.file_size):
            raise LoadError(
                f"{filename}: zip member {name!r}'s local header says {stored} bytes, the directory "
                f"{info.compress_size}; refused"
            )
    data_offset = info.header_offset + _LOCAL.size + name_len + extra_len
    if data_offset + info.compress_size > end:
        raise LoadError(
            f"{filename}: zip member {name!r} ({info.compress_size} bytes at {data_offset}) runs past the archive's "
            "data; refused"
        )
    return Member(name, info.header_offset, data_offset, info.compress_size, info.file_size, info.compress_type)


def read_layout(path: Path) -> ZipLayout:
    """Check ``path``'s zip layout (see the module's text) and return its members; one-line :class:`LoadError`
    otherwise."""
    filename = path.name
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as handle:
            file_size = handle.seek(0, 2)
            end = min(archive.start_dir, file_size)
            members: dict[str, Member] = {}
            for info in archive.infolist():
                if info.filename in members:
                    raise LoadError(f"{filename}: the zip archive holds two members named {info.filename!r}; refused")
                members[info.filename] = _member(handle, info, end, filename)
    except LoadError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        raise LoadError(f"{filename}: damaged zip archive ({exc})") from exc
    ordered = sorted(members.values(), key=lambda m: m.header_offset)
    if ordered and ordered[0].header_offset != 0:
        raise LoadError(f"{filename}: the zip archive has {ordered[0].header_offset} bytes before its first member; "
                        "refused")
    for before, after in itertools.pairwise(ordered):
        if before.data_offset + before.stored > after.header_offset:
            raise LoadError(
                f"{filename}: zip members {before.name!r} and {after.name!r} overlap in the file; refused"
            )
    return ZipLayout(file_size, members)


def check_members(layout: ZipLayout, members: list[Member], filename: str) -> None:
    """Budget the expansion of ``members``' compressed data (see :mod:`~sparsegui.core.loading.budgets`)."""
    check_expansion(filename, ((f"zip member {m.name!r}", m.size, m.stored) for m in members if m.compressed))


def read_member(path: Path, layout: ZipLayout, name: str, limit: int) -> bytes:
    """Member ``name``'s bytes, refused before reading when it would give more than ``limit`` bytes or expand past
    the budget for compressed data."""
    member = layout.members[name]
    if member.size > limit:
        raise LoadError(f"{path.name}: zip member {name!r} declares {size_text(member.size)}, over the "
                        f"{size_text(limit)} read for it; refused")
    check_members(layout, [member], path.name)
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        raise LoadError(f"{path.name}: damaged zip member {name!r} ({exc})") from exc
