"""Loading ``torch.save`` files safely: ``weights_only=True`` always, memory-mapped for zip checkpoints."""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from sparsegui.core.errors import LoadError, TrustRequired
from sparsegui.core.loading.pickles import pickle_globals, unsafe_globals
from sparsegui.core.loading.sniff import Format


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__


_PROTOCOLS = {op.name: op.proto for op in pickletools.opcodes}
_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch 2.6")


def _refusal_reason(exc: BaseException) -> str:
    """The line of torch's weights-only refusal that says what was refused (not its advice to load unsafely)."""
    text = str(exc).split("WeightsUnpickler error:", 1)[-1]
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(_BOILERPLATE):
            match = re.fullmatch(r"Unsupported operand (\d+)", line)
            if match and int(match.group(1)) < 256:
                names = [op.name for op in pickletools.opcodes if op.code == chr(int(match.group(1)))]
                if names:
                    line = f"unsupported pickle opcode {names[0]}, protocol {_PROTOCOLS.get(names[0], '?')}"
            return line
    return "the file holds objects the safe loader does not allow"


def _is_refusal(exc: BaseException) -> bool:
    return isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower().replace("_", " ")


def _trust_message(path: Path, wanted: list[str], what: str) -> str:
    shown = ", ".join(wanted[:6]) + ("…" if len(wanted) > 6 else "") if wanted else "unknown code"
    return f"{path.name}: {what} runs code from the file when opened ({shown}); open it only if you trust it (--trust)"


def wanted_imports(path: Path, fmt: Format) -> list[str]:
    """What opening ``path`` would import, read without running anything."""
    if fmt is Format.TORCH_ZIP:
        try:
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception as exc:
            # torch's scanner knows only protocol-2 opcodes; pickletools reads every protocol
            data = _zip_data_pkl(path, exc)
            return unsafe_globals(pickle_globals(data))
    return unsafe_globals(pickle_globals(path.read_bytes()))


def _zip_data_pkl(path: Path, cause: BaseException) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            info = next(i for i in archive.infolist() if i.filename.rpartition("/")[2] == "data.pkl")
            if info.file_size > 1 << 30:
                raise LoadError(f"{path.name}: its data.pkl declares {info.file_size} bytes; refused")
            return archive.read(info)
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"{path.name}: corrupt or truncated checkpoint ({_first_line(cause)})") from exc


def load_torch_file(path: Path, fmt: Format, trust: bool) -> Any:
    """``torch.load`` ``path`` without running code from it (unless ``trust``); errors become :class:`LoadError`."""
    if fmt is Format.TORCH_ZIP:
        wanted = wanted_imports(path, fmt)
        if wanted and not trust:
            raise TrustRequired(_trust_message(path, wanted, "a pickled Python object"), wanted)
        if wanted:
            return _trusted_load(path)
    try:
        loaded = torch.load(
            str(path), map_location="cpu", weights_only=True, mmap=fmt is Format.TORCH_ZIP
        )
        if fmt is Format.TORCH_ZIP:
            _check_record_sizes(path)
        return loaded
    except LoadError:
        raise
    except pickle.UnpicklingError as exc:
        if not _is_refusal(exc):
            raise LoadError(f"{path.name}: corrupt or unreadable checkpoint ({_first_line(exc)})") from exc
        if trust:
            return _trusted_load(path)
        wanted = wanted_imports(path, fmt) if fmt is Format.TORCH_LEGACY else []
        if wanted:
            raise TrustRequired(_trust_message(path, wanted, "a pickled Python object"), wanted) from exc
        # no import named: a malformed or hostile stream (e.g. SETITEM on a tensor), not a trust question
        raise LoadError(f"{path.name}: refused by the safe loader ({_refusal_reason(exc)})") from exc
    except MemoryError as exc:
        raise LoadError(f"{path.name}: not enough memory to load it") from exc
    except Exception as exc:
        raise LoadError(f"{path.name}: corrupt or truncated checkpoint ({_first_line(exc)})") from exc


def _record_sizes(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(bytes each tensor record holds, bytes data.pkl asks of it), read with torch's weights-only unpickler."""
    from torch._weights_only_unpickler import Unpickler

    wanted: dict[str, int] = {}

    def persistent_load(pid: tuple[Any, ...]) -> Any:
        _, storage_type, key, _location, numel = pid
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
        nbytes = numel * torch._utils._element_size(dtype)
        wanted[str(key)] = max(wanted.get(str(key), 0), nbytes)
        meta = torch.UntypedStorage(nbytes, device="meta")
        return torch.storage.TypedStorage(wrap_storage=meta, dtype=dtype, _internal=True)

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next(n for n in names if n == "data.pkl" or n.endswith("/data.pkl"))
        prefix = pkl[: -len("data.pkl")] + "data/"
        held = {n[len(prefix) :]: archive.getinfo(n).file_size for n in names if n.startswith(prefix)}
        unpickler = Unpickler(io.BytesIO(archive.read(pkl)), encoding="utf-8")
        unpickler.persistent_load = persistent_load  # type: ignore[method-assign]
        unpickler.load()
    return held, wanted


def _check_record_sizes(path: Path) -> None:
    """Memory-mapped loading never checks that a tensor's record is as long as the tensor: a damaged file would
    silently give tensors its neighbours' bytes. Refuse such a file (a failure of the check itself is ignored)."""
    try:
        held, wanted = _record_sizes(path)
    except Exception:
        return
    short = [key for key, nbytes in wanted.items() if held.get(key, -1) < nbytes]
    if short:
        key = short[0]
        raise LoadError(
            f"{path.name}: corrupt checkpoint (tensor record data/{key} holds {held.get(key, 0)} bytes, "
            f"{wanted[key]} needed)"
        )


def _trusted_load(path: Path) -> Any:
    """Full unpickling, only ever reached after the user's explicit trust step."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise LoadError(f"{path.name}: failed to load even with trust ({_first_line(exc)})") from exc
