"""Atomic writes: a temporary file in the target folder, flushed, fsynced, verified, then renamed over the target."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from sparsegui.core.errors import ExportError, SparseGUIError


def atomic_write(
    target: str | Path, write: Callable[[Path], None], verify: Callable[[Path], None] | None = None
) -> Path:
    """Write ``target`` through ``write(tmp_path)``; on any failure the old target is untouched and no temp remains."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"{target}: folder {str(folder)!r} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ExportError(f"{target}: cannot write in {str(folder)!r} ({exc.strerror or exc})") from exc
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
            raise ExportError(f"{target}: export failed, nothing was overwritten ({detail})") from exc
        raise
    return target


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
