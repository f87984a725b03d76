"""Atomic writes: a temporary file in the target folder, flushed, fsynced, verified, then renamed over the target.

A target that is a symlink to a regular file is followed: the file it points to is replaced (atomically, in that
file's folder) and the link stays as it was. A target that is a folder, a FIFO, a socket or a device, directly or
through a symlink, is refused: the rename would put a regular file in its place.

Temporary files are named ``.TAG.sparsegui-PID-RANDOM.tmp``: TAG is the target's name, or for a name too long to
fit (NAME_MAX, usually 255 bytes) its first bytes, ``~`` and 16 hex digits of its SHA-256, so a valid target name
always gets a valid temporary name; PID is the writing process; RANDOM comes from :func:`tempfile.mkstemp`. One
left behind by a process killed mid-export is removed by the next export of the same target (or
:func:`remove_stale_temps`) — only when its name has exactly this form for this target, its process no longer
runs, it is a regular file (not a link) and it belongs to this user. A user's own ``.model.pt.123.tmp`` never
matches: the ``sparsegui-`` mark is what makes a file ours.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from sparsegui.core.errors import ExportError, SparseGUIError
from sparsegui.core.paths import check_output_target

TEMP_MARK = "sparsegui"
_PID_DIGITS = 10  # room kept for the PID in a temporary's name (Linux PIDs have at most 7 digits)
_RANDOM_CHARS = 8  # what tempfile.mkstemp puts between prefix and suffix
_HEAD_BYTES = 40  # how much of a too-long target name a temporary keeps, before the hash


def atomic_write(
    target: str | Path, write: Callable[[Path], None], verify: Callable[[Path], None] | None = None
) -> Path:
    """Write ``target`` through ``write(tmp_path)``; on any failure the old target is untouched and no temp remains.

    Returns ``target`` as given (a symlink stays a symlink; the file it points to holds the new content).
    """
    given = Path(target)
    target = _follow_links(given)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"{given}: folder {str(folder)!r} does not exist")
    _check_target(given, target)
    remove_stale_temps(target)
    prefix = f".{temp_tag(target.name, _name_max(folder))}.{TEMP_MARK}-{os.getpid()}-"
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ExportError(f"{given}: cannot write in {str(folder)!r} ({exc.strerror or exc})") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb+") as handle:
            handle.flush()
            os.fsync(handle.fileno())
        if verify is not None:
            verify(tmp)
        _check_target(given, target)  # again: the target may have changed while the file was written
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
        _fsync_dir(folder)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, SparseGUIError):
            raise
        if isinstance(exc, Exception):
            detail = f"{type(exc).__name__}: {exc}"
            raise ExportError(f"{given}: export failed, nothing was overwritten ({detail})") from exc
        raise
    return given


def _follow_links(path: Path) -> Path:
    """The file a (chain of) symlink(s) finally names; ``path`` itself when it is not a link."""
    if not path.is_symlink():
        return path
    try:
        return Path(os.path.realpath(path, strict=False))
    except (OSError, RuntimeError) as exc:
        raise ExportError(f"{path}: cannot follow the symlink ({exc})") from exc


def _check_target(given: Path, target: Path) -> None:
    """Refuse a target that is (or whose link points at) a folder, FIFO, socket or device."""
    if given != target:
        check_output_target(given)
    check_output_target(target)


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def temp_tag(name: str, name_max: int = 255) -> str:
    """What a temporary file of the target ``name`` is named after: the name itself, or when the temporary's name
    would exceed ``name_max`` bytes, the name's first bytes, ``~`` and 16 hex digits of its SHA-256."""
    longest = f".{name}.{TEMP_MARK}-{'9' * _PID_DIGITS}-{'x' * _RANDOM_CHARS}.tmp"
    if len(os.fsencode(longest)) <= name_max:
        return name
    head = name
    while len(os.fsencode(head)) > _HEAD_BYTES:
        head = head[:-1]
    return f"{head}~{hashlib.sha256(os.fsencode(name)).hexdigest()[:16]}"


def _temp_pattern(name: str, name_max: int) -> re.Pattern[str]:
    tag = re.escape(temp_tag(name, name_max))
    return re.compile(rf"\.{tag}\.{TEMP_MARK}-([1-9][0-9]{{0,{_PID_DIGITS - 1}}})-[A-Za-z0-9_]{{6,16}}\.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Remove temporary files of ``target`` left by exports whose process no longer runs; returns what was removed.

    Only files SparseGUI made are candidates: named ``.TAG.sparsegui-PID-RANDOM.tmp`` for this target, regular
    files (a symlink or folder of that name stays), owned by this user. One whose process still runs, this one
    included, is kept. Errors are ignored: this is housekeeping, never a reason for an export to fail.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    pattern = _temp_pattern(target.name, _name_max(folder))
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or _alive(int(match.group(1))):
            continue
        path = folder / name
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or (hasattr(os, "geteuid") and info.st_uid != os.geteuid()):
                continue
            path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(target: str | Path, text: str, verify: Callable[[Path], object] | None = None) -> Path:
    """:func:`atomic_write` of a UTF-8 text file (``verify`` reads the temporary file back before it replaces
    anything)."""
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    def check(path: Path) -> None:
        if verify is not None:
            verify(path)

    return atomic_write(target, write, check)
