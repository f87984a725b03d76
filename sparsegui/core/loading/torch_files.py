"""Loading ``torch.save`` files safely: ``weights_only=True`` always, memory-mapped for zip checkpoints.

Before torch reads anything, the file's structure is checked (:mod:`~sparsegui.core.loading.zip_members`) and its
pickle is read once, without running it (:mod:`~sparsegui.core.loading.pickle_scan`): what it imports decides the
trust question, what it calls is checked for memory made out of nothing, and the bytes it asks of each tensor record
are compared with what the record holds. A checkpoint whose tensor records are all stored uncompressed is
memory-mapped; one with a compressed record (``zip -r`` of an unpacked checkpoint) is read into memory within the
budgets of :mod:`~sparsegui.core.loading.budgets`, since mapping compressed bytes would give garbage tensors.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparsegui.core.errors import LoadError, TrustRequired
from sparsegui.core.loading.budgets import PICKLE_LIMIT, check_memory, memory_budget
from sparsegui.core.loading.pickle_scan import Scan, check_calls, scan_pickle
from sparsegui.core.loading.pickles import unsafe_globals
from sparsegui.core.loading.sniff import Format
from sparsegui.core.loading.zip_members import ZipLayout, check_members, read_layout, read_member

LEGACY_STREAMS = 5
"""A legacy file is five pickles (magic number, protocol, system info, the object, storage keys), then raw data."""


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


@dataclass
class _ZipPlan:
    layout: ZipLayout
    scan: Scan
    mappable: bool
    """True when every tensor record is stored uncompressed (so memory-mapping gives the real bytes)."""


def _plan_zip(path: Path) -> _ZipPlan:
    """Check the archive and read its data.pkl once; nothing is unpickled."""
    layout = read_layout(path)
    pickles = [name for name in layout.members if name == "data.pkl" or name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise LoadError(f"{path.name}: a torch checkpoint holds one data.pkl, this zip holds {len(pickles)}; refused")
    limit = min(PICKLE_LIMIT, memory_budget() // 4)
    data = read_member(path, layout, pickles[0], limit)
    records = layout.under(pickles[0][: -len("data.pkl")] + "data/")
    return _ZipPlan(layout, scan_pickle(data), not any(m.compressed for m in records))


def _check_records(path: Path, plan: _ZipPlan) -> None:
    """Each tensor record must hold the bytes the pickle asks of it (a memory-mapped tensor would otherwise read
    its neighbours' bytes); compressed records are read into memory, so they must fit the budgets."""
    prefix = next(n for n in plan.layout.members if n.endswith("data.pkl"))[: -len("data.pkl")] + "data/"
    held = {m.name[len(prefix) :]: m.size for m in plan.layout.under(prefix)}
    for key, nbytes in plan.scan.storages.items():
        if held.get(key, -1) < nbytes:
            raise LoadError(
                f"{path.name}: corrupt checkpoint (tensor record data/{key} holds {held.get(key, 0)} bytes, "
                f"{nbytes} needed)"
            )
    if not plan.mappable:  # every member is read into memory: their expansion is budgeted together
        check_members(plan.layout, list(plan.layout.members.values()), path.name)
        check_memory(path.name, "its compressed tensor records are read into memory:",
                     sum(m.size for m in plan.layout.under(prefix)))


def wanted_imports(path: Path, fmt: Format) -> list[str]:
    """What opening ``path`` would import, read without running anything."""
    return unsafe_globals(_scan(path, fmt).imports)


def _scan(path: Path, fmt: Format) -> Scan:
    if fmt is Format.TORCH_ZIP:
        return _plan_zip(path).scan
    with path.open("rb") as handle:
        return scan_pickle(handle, max_streams=LEGACY_STREAMS)


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, ValueError):
        return False


def _check_before_loading(path: Path, scan: Scan, plan: _ZipPlan | None) -> None:
    """Everything refused before ``torch.load`` runs (the imports were settled by the trust question)."""
    check_calls(scan, path.name)
    if plan is not None:
        if scan.unresolved_storage:
            raise LoadError(f"{path.name}: its pickle names a tensor record in a way torch.save never writes; refused")
        _check_records(path, plan)
        return
    if _is_tar(path):  # torch tries the pre-2017 tar layout first: never a file that starts a pickle
        raise LoadError(f"{path.name}: a pickle that is also a tar archive; refused")
    if scan.untyped_dtypes:  # torch writes these in its legacy format, but its legacy reader fails on them
        dtype = scan.untyped_dtypes[0].removeprefix("torch.")
        raise LoadError(
            f"{path.name}: holds {dtype} tensors in torch's legacy (pre-zip) format, which torch cannot read back; "
            "save it again with torch.save's default format"
        )
    check_memory(path.name, "a legacy checkpoint is read into memory whole:", path.stat().st_size)


def load_torch_file(path: Path, fmt: Format, trust: bool, mmap: bool = True) -> Any:
    """``torch.load`` ``path`` without running code from it (unless ``trust``); errors become :class:`LoadError`.
    A zip checkpoint is memory-mapped when ``mmap`` and its records allow it, else read into memory."""
    plan = _plan_zip(path) if fmt is Format.TORCH_ZIP else None
    scan = plan.scan if plan is not None else _scan(path, fmt)
    wanted = unsafe_globals(scan.imports)
    if wanted and not trust:
        raise TrustRequired(_trust_message(path, wanted, "a pickled Python object"), wanted)
    if wanted:
        return _trusted_load(path)
    _check_before_loading(path, scan, plan)
    try:
        mapped = mmap and plan is not None and plan.mappable
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mapped)
    except pickle.UnpicklingError as exc:
        if not _is_refusal(exc):
            raise LoadError(f"{path.name}: corrupt or unreadable checkpoint ({_first_line(exc)})") from exc
        if trust:
            return _trusted_load(path)
        # no import named: a malformed or hostile stream (e.g. SETITEM on a tensor), not a trust question
        raise LoadError(f"{path.name}: refused by the safe loader ({_refusal_reason(exc)})") from exc
    except MemoryError as exc:
        raise LoadError(f"{path.name}: not enough memory to load it") from exc
    except Exception as exc:
        raise LoadError(f"{path.name}: corrupt or truncated checkpoint ({_first_line(exc)})") from exc


def _trusted_load(path: Path) -> Any:
    """Full unpickling, only ever reached after the user's explicit trust step."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise LoadError(f"{path.name}: failed to load even with trust ({_first_line(exc)})") from exc
