"""Tell a file's format from its content (magic bytes), not from its name."""

from __future__ import annotations

import enum
import json
import pickletools
import struct
import zipfile
from pathlib import Path

from sparsegui.core.errors import LoadError
from sparsegui.core.loading.budgets import JSON_LIMIT
from sparsegui.core.loading.paths import require_regular_file


class Format(enum.Enum):
    TORCH_ZIP = "torch zip checkpoint"
    TORCH_LEGACY = "legacy torch pickle"
    TORCHSCRIPT = "TorchScript archive"
    EXPORTED_PROGRAM = "torch.export program (.pt2)"
    SAFETENSORS = "safetensors"
    SAFETENSORS_INDEX = "sharded safetensors index"
    HDF5 = "HDF5"


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_OTHER_MAGICS: dict[bytes, str] = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x93NUMPY": "a NumPy .npy array (not a model)",
    b"\x1f\x8b": "a gzip archive",
    b"\x08\x01\x12": "an ONNX model (not supported)",
    b"\x7fELF": "an executable",
}


def _zip_kind(path: Path) -> Format:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:  # e.g. "zip file version 14.7"
        raise LoadError(f"{path.name}: damaged zip archive ({exc})") from exc
    tails = {name.split("/", 1)[1] if "/" in name else name for name in names}
    if "archive_format" in tails or any(t.startswith("models/") and t.endswith(".json") for t in tails):
        return Format.EXPORTED_PROGRAM
    if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
        return Format.TORCHSCRIPT
    if "data.pkl" in tails:
        return Format.TORCH_ZIP
    raise LoadError(f"{path.name}: a zip archive but not a PyTorch checkpoint (no data.pkl inside)")


def _looks_like_safetensors(head: bytes, size: int, name: str) -> bool:
    if len(head) < 10 or head[8:9] != b"{":
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len > size - 8:
        raise LoadError(f"{name}: safetensors header claims {header_len} bytes but the file has {size} (truncated?)")
    return header_len >= 2


def _names_import_in_old_pickle(path: Path) -> bool:
    """A protocol 0/1 pickle (no PROTO opcode) that imports something: parsed by pickletools, never run."""
    with path.open("rb") as handle:
        data = handle.read(1 << 20)
    imports = False
    try:
        for opcode, _arg, _pos in pickletools.genops(data):
            imports = imports or opcode.name in ("GLOBAL", "INST", "STACK_GLOBAL")
            if opcode.name == "STOP":
                return imports
    except Exception:
        return False
    return False


def read_json(path: Path, size: int, what: str) -> object:
    """Parse a JSON file of ``size`` bytes: refused unread past :data:`JSON_LIMIT`, and nesting too deep for the
    parser is a one-line :class:`LoadError` like any other invalid JSON."""
    if size > JSON_LIMIT:
        raise LoadError(f"{path.name}: a {size} byte JSON file is over the {JSON_LIMIT} bytes read for {what}; refused")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError; an integer of thousands of digits
        raise LoadError(f"{path.name}: not {what} (invalid JSON: {str(exc)[:200]})") from exc
    except RecursionError as exc:
        raise LoadError(f"{path.name}: not {what} (JSON nested too deeply to read)") from exc


def sniff(path: Path, what: str = "model file") -> Format:
    """Return the format of ``path``, or raise :class:`LoadError` saying what the file looks like instead (a
    folder, a device or pipe (see :func:`~sparsegui.core.loading.paths.require_regular_file`), another format)."""
    if path.is_dir():
        raise LoadError(f"{path}: is a folder; open its .safetensors, .index.json or checkpoint file")
    require_regular_file(path, what)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(1024)
    except OSError as exc:
        raise LoadError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if size == 0:
        raise LoadError(f"{path.name}: the file is empty")
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head.startswith(HDF5_MAGIC) or head[512:520] == HDF5_MAGIC:
        return Format.HDF5
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return Format.TORCH_LEGACY
    if _looks_like_safetensors(head, size, path.name):
        return Format.SAFETENSORS
    if head[:1] in (b"c", b"(", b"}", b"]") and _names_import_in_old_pickle(path):
        return Format.TORCH_LEGACY
    if head.lstrip()[:1] == b"{":
        index = read_json(path, size, "a checkpoint")
        if isinstance(index, dict) and isinstance(index.get("weight_map"), dict):
            return Format.SAFETENSORS_INDEX
        if isinstance(index, dict) and "steps" in index:
            raise LoadError(f"{path.name}: this is a SparseGUI recipe, not a model (use 'sparsegui apply')")
        raise LoadError(f"{path.name}: a JSON file without a 'weight_map' is not a sharded checkpoint index")
    for magic, what in _OTHER_MAGICS.items():
        if head.startswith(magic):
            raise LoadError(f"{path.name}: not a checkpoint, this looks like {what}")
    raise LoadError(
        f"{path.name}: unrecognised file format (not a torch checkpoint, safetensors, HDF5 or TorchScript file)"
    )
