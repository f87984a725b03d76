"""Writing a Hugging Face model folder: safetensors shards, their index, and the source folder's other files.

Shards are filled in the tensors' order up to ``shard_size`` bytes (5 GB by default, as ``save_pretrained``; a
tensor bigger than that gets a shard of its own), named ``model-0000K-of-0000N.safetensors`` with a
``model.safetensors.index.json`` whose ``total_size`` is the tensors' bytes — or one ``model.safetensors`` when
everything fits in one. Tensors are computed and written one at a time. The folder is written under a temporary
name beside the target and renamed into place when complete: a failure or a cancel leaves no half-written folder,
and an existing folder is never touched (the target must not exist).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors import safe_open

from sparsegui import __version__
from sparsegui.core.errors import ExportError, SparseGUIError
from sparsegui.core.export.safetensors_out import write_safetensors
from sparsegui.core.export.state import LazyTensors
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report

SHARD_SIZE = 5 * 10**9
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def plan_shards(sizes: Sequence[tuple[str, int]], shard_size: int) -> list[list[str]]:
    """Keys grouped in order into shards of at most ``shard_size`` bytes (an oversized tensor alone)."""
    shards: list[list[str]] = []
    filled = shard_size
    for key, size in sizes:
        if filled + size > shard_size or not shards:
            shards.append([])
            filled = 0
        shards[-1].append(key)
        filled += size
    return shards


def _fsync(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def write_folder(target: str | Path, tensors: LazyTensors, others: Sequence[Path] = (),
                 metadata: dict[str, str] | None = None, shard_size: int = SHARD_SIZE,
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Path:
    """Write ``tensors`` as a model folder at ``target`` (which must not exist) with copies of ``others``."""
    target = Path(target)
    if shard_size < 1:
        raise ExportError(f"shard size {shard_size} must be at least one byte")
    if target.exists() or target.is_symlink():
        raise ExportError(f"{target}: already exists; a model folder is written to a new name, never over another")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"{target}: folder {str(parent)!r} does not exist")
    keys = list(tensors)
    sizes = [(k, _nbytes(tensors, k)) for k in keys]
    groups = plan_shards(sizes, shard_size)
    names = [SINGLE] if len(groups) == 1 else \
        [f"model-{i:05d}-of-{len(groups):05d}.safetensors" for i in range(1, len(groups) + 1)]
    tmp = parent / f".{target.name[:40]}.sparsegui-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        tmp.mkdir()
    except OSError as exc:
        raise ExportError(f"{target}: cannot write in {str(parent)!r} ({exc.strerror or exc})") from exc
    try:
        _write(tmp, tensors, groups, names, others, metadata or {}, progress, cancel)
        check(cancel)
        os.rename(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, SparseGUIError) or not isinstance(exc, Exception):
            raise
        raise ExportError(f"{target}: export failed, nothing was written ({type(exc).__name__}: {exc})") from exc
    report(progress, 1.0, f"wrote {target.name}")
    return target


def _nbytes(tensors: LazyTensors, key: str) -> int:
    info = tensors.info(key)
    numel = 1
    for s in info.shape:
        numel *= s
    return numel * torch.empty(0, dtype=info.dtype).element_size()


def _write(folder: Path, tensors: LazyTensors, groups: list[list[str]], names: list[str], others: Sequence[Path],
           metadata: dict[str, str], progress: ProgressCallback | None, cancel: CancelToken | None) -> None:
    total_keys = sum(len(g) for g in groups)
    written = 0
    meta = {"format": "pt", "producer": f"sparsegui {__version__}", **metadata}
    # a shard is flushed to disk on a helper thread while the next one is written; all are on disk before the
    # index, the verification and the rename that publishes the folder
    with ThreadPoolExecutor(1, thread_name_prefix="sparsegui-fsync") as flusher:
        flushed: list[Future[None]] = []
        for group, name in zip(groups, names, strict=True):
            check(cancel)
            shapes = {k: (tensors.info(k).dtype, tensors.info(k).shape) for k in group}

            def tick(index: int, base: int = written, name: str = name) -> None:
                check(cancel)
                report(progress, 0.95 * (base + index + 1) / max(total_keys, 1), f"writing {name}")

            write_safetensors(folder / name, group, shapes, tensors.__getitem__, meta, tick, tensors.stream)
            flushed.append(flusher.submit(_fsync, folder / name))
            written += len(group)
        for future in flushed:
            future.result()  # an fsync error is raised here
    if len(groups) > 1:
        total = sum(_nbytes(tensors, k) for g in groups for k in g)
        index = {"metadata": {"total_size": total}, "weight_map": {k: n for g, n in zip(groups, names, strict=True)
                                                                    for k in g}}
        (folder / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        _fsync(folder / INDEX)
    for other in others:
        shutil.copy2(other, folder / other.name)
    report(progress, 0.97, "reading the folder back")
    _verify(folder, groups, names)


def _verify(folder: Path, groups: list[list[str]], names: list[str]) -> None:
    for group, name in zip(groups, names, strict=True):
        with safe_open(str(folder / name), framework="pt") as handle:
            if sorted(handle.keys()) != sorted(group):
                raise ExportError(f"{name}: the written shard does not hold the expected tensors")


def is_folder_target(path: str | Path) -> bool:
    """A target names a model folder when it ends with a separator or has no extension (``out/``, ``gpt2-pruned``)."""
    text = str(path)
    return text.endswith(("/", os.sep)) or not Path(text).suffix
