"""The floor for an export: reading the checkpoint once and writing as many bytes once, on the same disk.

- ``read``: ``cat`` of every shard to ``/dev/null`` (whatever the page cache holds is read from memory, as an export
  reading the memory-mapped originals would);
- ``write``: the same byte count written in 64 MB blocks, one file per shard, each ``fsync``-ed;
- ``copy``: each shard copied to a new file and ``fsync``-ed (read once, write once, in one pass).

The floor is the faster of ``read + write`` and ``copy``. Written files are deleted at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

BLOCK = 64 << 20


def shard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def read_seconds(files: Sequence[Path]) -> float:
    start = time.perf_counter()
    subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def write_seconds(sizes: Sequence[int], folder: Path) -> float:
    folder.mkdir(parents=True, exist_ok=False)
    block = os.urandom(BLOCK)
    try:
        start = time.perf_counter()
        for index, size in enumerate(sizes):
            with (folder / f"floor-{index}.bin").open("wb") as handle:
                for offset in range(0, size, BLOCK):
                    handle.write(block[: min(BLOCK, size - offset)])
                handle.flush()
                os.fsync(handle.fileno())
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def copy_seconds(files: Sequence[Path], folder: Path) -> float:
    folder.mkdir(parents=True, exist_ok=False)
    try:
        start = time.perf_counter()
        for file in files:
            target = folder / file.name
            shutil.copyfile(file, target)
            with target.open("rb+") as handle:
                os.fsync(handle.fileno())
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def floor(checkpoint: Path, work: Path) -> dict[str, float]:
    """Read, write and copy times for ``checkpoint`` (a model folder or one file); scratch files go under ``work``."""
    files = shard_files(checkpoint) if checkpoint.is_dir() else [checkpoint]
    sizes = [f.stat().st_size for f in files]
    read = read_seconds(files)
    write = write_seconds(sizes, work / f"floor-write-{os.getpid()}")
    copy = copy_seconds(files, work / f"floor-copy-{os.getpid()}")
    return {"bytes": float(sum(sizes)), "read_s": read, "write_s": write, "copy_s": copy,
            "floor_s": min(read + write, copy)}
