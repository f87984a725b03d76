"""Temporary files of atomic exports: named so that only SparseGUI's own are ever cleaned up, and short enough for
any valid target name (sparsegui/core/export/atomic.py).

A temporary is ``.TAG.sparsegui-PID-RANDOM.tmp``; housekeeping removes one only when it is a regular file of this
user, named exactly so for this target, and its process is dead. Everything that merely looks similar stays.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsegui.core.document import Document
from sparsegui.core.export.atomic import atomic_write, remove_stale_temps, temp_tag


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The PID of a process that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(proc.stdout)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


def ours(target: Path, pid: int, rand: str = "abcd1234") -> Path:
    return target.parent / f".{temp_tag(target.name, 255)}.sparsegui-{pid}-{rand}.tmp"


def test_only_our_dead_temporaries_are_removed(tmp_path: Path, dead_pid: int) -> None:
    """Look-alikes stay: the old naming (a user's own '.model.pt.123.tmp'), other suffixes, PID 0, another target,
    a symlink or a folder under our name, a live process's temporary, a file of another user."""
    target = tmp_path / "model.pt"
    target.write_bytes(b"the user's model")
    stale = ours(target, dead_pid)
    stale.write_bytes(b"left by a killed export")
    keep_files = [
        f".model.pt.{dead_pid}.tmp",  # the user's own backup in the old, ambiguous form
        f".model.pt.{dead_pid}.abc123.tmp",
        f".model.pt.sparsegui-{dead_pid}-abcd1234.tmp.bak",
        f".model.pt.sparsegui-{dead_pid}-abcd1234.tmp~",
        f"model.pt.sparsegui-{dead_pid}-abcd1234.tmp",  # no leading dot
        ".model.pt.sparsegui-0-abcd1234.tmp",  # PID 0 would mean "my process group"
        f".model.pt.sparsegui-0{dead_pid}-abcd1234.tmp",
        f".model.pt.sparsegui-{dead_pid}-abcd.tmp",  # random part too short
        f".model.pt.sparsegui-{dead_pid}-abc.de123.tmp",
        f".model.pt.extra.sparsegui-{dead_pid}-abcd1234.tmp",
        f".other.pt.sparsegui-{dead_pid}-abcd1234.tmp",
        f".model.ptx.sparsegui-{dead_pid}-abcd1234.tmp",
        f".model.pt.sparsegui-{os.getpid()}-abcd1234.tmp",  # a live process: this one
    ]
    for name in keep_files:
        (tmp_path / name).write_bytes(b"not ours to delete")
    user_file = tmp_path / "precious.bin"
    user_file.write_bytes(b"precious")
    (tmp_path / f".model.pt.sparsegui-{dead_pid}-link0001.tmp").symlink_to(user_file.name)
    (tmp_path / f".model.pt.sparsegui-{dead_pid}-dir00001.tmp").mkdir()
    foreign = ours(target, dead_pid, "foreign1")
    foreign.write_bytes(b"another user's export")
    if os.geteuid() == 0:
        os.chown(foreign, 54321, 54321)
    else:
        foreign.unlink()
    before = {p.name: (p.is_symlink(), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
              for p in tmp_path.iterdir()}

    assert remove_stale_temps(target) == [stale]
    del before[stale.name]
    after = {p.name: (p.is_symlink(), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
             for p in tmp_path.iterdir()}
    assert after == before
    assert user_file.read_bytes() == b"precious"


def test_exports_write_marked_temporaries(tmp_path: Path) -> None:
    """The temporary a real export writes carries the mark, the target's name and this process's PID."""
    seen: list[str] = []

    def write(tmp: Path) -> None:
        seen.append(tmp.name)
        tmp.write_bytes(b"new")

    atomic_write(tmp_path / "model.safetensors", write)
    assert len(seen) == 1
    prefix = f".model.safetensors.sparsegui-{os.getpid()}-"
    assert seen[0].startswith(prefix) and seen[0].endswith(".tmp"), seen[0]
    assert os.listdir(tmp_path) == ["model.safetensors"]


@pytest.mark.parametrize("length", [200, 220, 221, 243, 255])
@pytest.mark.parametrize("ext", ["pt", "safetensors", "h5"])
def test_long_target_names_export(tmp_path: Path, length: int, ext: str, dead_pid: int) -> None:
    """Any valid name (up to NAME_MAX = 255 bytes) exports: a temporary name that would be too long is shortened to
    the name's head and a hash, still marked; a killed export's shortened temporary is removed by the next one."""
    name = "m" * (length - len(ext) - 1) + "." + ext
    assert len(name) == length
    target = tmp_path / name
    stale = ours(target, dead_pid)
    assert len(os.fsencode(stale.name)) <= 255 and ".sparsegui-" in stale.name
    stale.write_bytes(b"left by a killed export")
    sibling = tmp_path / ("m" * (length - len(ext) - 2) + "n." + ext)  # same head, another name: another hash
    sibling_stale = ours(sibling, dead_pid)
    sibling_stale.write_bytes(b"another target's temporary")
    Document.demo("lenet").export(target)
    assert target.stat().st_size > 0
    assert sorted(os.listdir(tmp_path)) == sorted([name, sibling_stale.name])


@pytest.mark.parametrize("name", ["model.pt", "é" * 120 + ".pt", "权" * 80 + ".pt", "a.b.c" * 48 + ".pt"])
def test_temp_tag_fits(name: str) -> None:
    """The tag keeps short names whole and keeps every temporary name within 255 bytes, multibyte names included."""
    if len(os.fsencode(name)) > 255:
        pytest.skip("not a valid name")
    tag = temp_tag(name, 255)
    full = f".{tag}.sparsegui-4194304-abcd1234.tmp"
    assert len(os.fsencode(full)) <= 255
    assert (tag == name) == (len(os.fsencode(name)) <= 220)
    assert temp_tag(name, 255) == tag, "the tag is stable, so the next export finds the temporary"
