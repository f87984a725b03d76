"""Atomic writes: a temporary file in the target folder, flushed, fsynced, verified, then renamed over the target.

A target that is a symlink is followed: the file it points to is replaced (atomically, in that file's folder) and
the link stays as it was. Temporary files are named ``.NAME.PID.RANDOM.tmp``; one left behind by a process that was
killed mid-export is removed by the next export of the same target (or :func:`remove_stale_temps`).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sparsegui.core.errors import ExportError, SparseGUIError

_STARTED = time.time()


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
    remove_stale_temps(target)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
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


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(name)}\.(?:(\d+)\.)?[^/]*\.tmp")


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

    A temporary file names its process (``.NAME.PID.RANDOM.tmp``); one of a live process, this one included, is
    kept. Errors are ignored: this is housekeeping, never a reason for an export to fail.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    pattern = _temp_pattern(target.name)
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or (match.group(1) is not None and _alive(int(match.group(1)))):
            continue
        path = folder / name
        try:
            if match.group(1) is None and path.stat().st_mtime >= _process_start():
                continue  # an older naming scheme: only files older than this process are surely stale
            path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def _process_start() -> float:
    """When this process started (seconds since the epoch): when it first imported this module."""
    return _STARTED


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
