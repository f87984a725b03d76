"""Refuse paths that are not regular files before anything opens them.

Opening a FIFO blocks until a writer appears; a character device (``/dev/zero``, ``/dev/urandom``) never ends;
``/dev/null`` and the kernel's ``/proc`` and ``/sys`` files read as empty or change while read. None is a model,
a mask file or a recipe, and all are told apart by ``stat`` alone, which never blocks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sparsegui.core.errors import LoadError

_PSEUDO_ROOTS = ("/proc", "/sys")
_STREAMS = ("/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/tty", "/dev/fd")
_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def special_file_kind(path: str | Path) -> str | None:
    """What ``path`` is when it is not a regular file one can read (``"a character device"``…), else None.

    A missing path gives None: callers say "no such file" in their own words.
    """
    given = os.path.abspath(path)
    resolved = os.path.realpath(path)
    if _under(given, _STREAMS):
        return "a standard stream or terminal"
    if _under(given, _PSEUDO_ROOTS) or _under(resolved, _PSEUDO_ROOTS):
        return "a kernel pseudo-file (under /proc or /sys)"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def require_regular_file(path: str | Path, what: str = "file") -> Path:
    """Return ``path`` if it is a regular file (or missing); else raise a one-line :class:`LoadError` such as
    ``"/dev/zero: is a character device, not a model file; refused"``. ``what`` names the expected file."""
    kind = special_file_kind(path)
    if kind is not None:
        raise LoadError(f"{path}: is {kind}, not a {what}; refused")
    return Path(path)
