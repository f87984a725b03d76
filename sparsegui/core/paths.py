"""The files a command reads and writes, checked before anything is loaded or written.

An export must never replace what the same command reads (the model, a shard of it, the recipe, a mask file), two
outputs of one command must not be the same file, and an output must not be a folder or a special file (a FIFO, a
socket, a device such as ``/dev/sda``), directly or through a symlink: atomic export replaces the target by a rename,
which would put a regular file in the device's place.

Two paths name the same file when they resolve to the same path (``a/../m.pt`` and ``m.pt``; a symlink and what it
points to, also for files that do not exist yet) or, for existing files, when they share device and inode (hard
links; the same folder reached through a bind mount).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsegui.core.errors import ExportError, LoadError

# A shard index is JSON; one bigger than this is not an index (the loader refuses it too).
MAX_INDEX_BYTES = 64 * 1024 * 1024

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO (named pipe)", "a character device", …)."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


@dataclass(frozen=True)
class _Identity:
    resolved: str
    inode: tuple[int, int] | None


def _identity(path: Path) -> _Identity:
    try:
        resolved = os.path.realpath(path)
    except (OSError, ValueError):
        resolved = os.path.abspath(path)
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return _Identity(resolved, None)
    return _Identity(resolved, (info.st_dev, info.st_ino))


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same resolved path, or (both existing) the same inode."""
    return _same(_identity(Path(a)), _identity(Path(b)))


def check_output_target(path: str | Path) -> None:
    """Refuse an output that exists and is not a regular file, or is a symlink to one that is not.

    A missing file (or a dangling symlink, whose target the export creates) is fine; a regular file is replaced.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise ExportError(f"{path}: a part of the path is not a folder") from exc
        raise ExportError(f"{path}: cannot write there ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(info.st_mode):
        via = " (through a symlink)" if path.is_symlink() else ""
        raise ExportError(f"{path}: is {kind_of(info.st_mode)}{via}, not a regular file; refusing to replace it")


def check_regular_input(path: str | Path, what: str = "input") -> None:
    """Refuse an input that exists but is a FIFO, socket or device, before anything opens it: reading one can block
    forever (a FIFO without a writer) or never end (``/dev/zero``). Missing files and folders are left to the
    loader, which names them in its own words."""
    path = Path(path)
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
        raise LoadError(f"{what} {path}: is {kind_of(info.st_mode)}, not a regular file; refused")


def shard_files(index: Path) -> list[Path]:
    """The shard files a sharded-checkpoint index names (empty when ``index`` is not a readable index).

    Only a regular file of at most :data:`MAX_INDEX_BYTES` whose JSON holds a ``weight_map`` object counts; this
    is for keeping outputs off the shards, so anything unreadable is simply not an index here (the loader reports
    it when it opens the file).
    """
    try:
        info = os.stat(index)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_INDEX_BYTES:
            return []
        with open(index, "rb") as handle:
            head = handle.read(1024).lstrip()
            if not head.startswith(b"{"):
                return []
            handle.seek(0)
            data = json.loads(handle.read(MAX_INDEX_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return []
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        return []
    names = dict.fromkeys(v for v in weight_map.values() if isinstance(v, str) and v and "\0" not in v)
    return [index.parent / name for name in names]


def recipe_input_files(recipe: Mapping[str, Any], base_dir: Path) -> list[Path]:
    """Files a recipe's steps read, resolved against ``base_dir`` as replay does: mask files (``"mask"``) and
    plugin files (``"method": "file.py:Class"``). Malformed steps are skipped (validation reports them)."""
    files: list[Path] = []
    steps = recipe.get("steps")
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, Mapping):
            continue
        mask, method = step.get("mask"), step.get("method")
        if isinstance(mask, str) and mask:
            files.append(base_dir / mask)
        if isinstance(method, str) and method.rpartition(":")[0].endswith(".py"):
            files.append(base_dir / method.rpartition(":")[0])
    return files


def input_files(paths: Iterable[str | Path | None]) -> list[Path]:
    """Each input path, followed by the shards of those that are sharded indexes; ``None`` entries are skipped."""
    out: list[Path] = []
    for item in paths:
        if item is None or str(item) == "":
            continue
        path = Path(item)
        out.append(path)
        out.extend(shard_files(path))
    return out


def check_outputs(outputs: Sequence[str | Path], inputs: Sequence[str | Path | None] = ()) -> None:
    """Refuse, before anything is loaded or written, outputs that would destroy something:

    - an output that is a folder or a special file (FIFO, socket, device), directly or through a symlink;
    - an output that is the same file as an input (the model, any shard of a sharded index, the recipe, a mask
      file), through symlinks, hard links or another spelling of the path;
    - two outputs that are the same file (``--masks-out`` equal to ``-o``).

    Raises :class:`ExportError` with one line naming both paths. The GUI calls this before every export with the
    open model's source as input.
    """
    targets = [Path(o) for o in outputs]
    for target in targets:
        check_output_target(target)
    sources = input_files(inputs)
    identities = [(_identity(s), s) for s in sources]
    seen: list[tuple[_Identity, Path]] = []
    for target in targets:
        ident = _identity(target)
        for other, source in identities:
            if _same(ident, other):
                raise ExportError(f"{target}: is the input file {source}; write the output to another file")
        for other, earlier in seen:
            if _same(ident, other):
                raise ExportError(f"{target}: is the same file as the other output {earlier}; give two different files")
        seen.append((ident, target))


def _same(a: _Identity, b: _Identity) -> bool:
    return a.resolved == b.resolved or (a.inode is not None and a.inode == b.inode)
