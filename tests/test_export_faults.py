"""Faults injected at each stage of an atomic export (sparsegui/core/export/atomic.py): creating the temporary
file, writing, fsync, verifying, copying permissions, the rename; a full disk (RLIMIT_FSIZE), a read-only folder,
a target that is a symlink, and the process killed mid-export. After each the previous target is byte-identical and
no temporary file is left (a killed export's temporary is removed by the next export).

A writer that fails midway is tested in tests/test_export.py; this file covers the other stages.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sparsegui.core.document import Document
from sparsegui.core.errors import ExportError
from sparsegui.core.export import atomic, writers
from sparsegui.core.export.atomic import remove_stale_temps
from sparsegui.core.loading import load_model

EXTS = ["pt", "safetensors", "h5"]
ROOT = Path(__file__).resolve().parents[1]


def pruned_doc() -> Document:
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["conv1.weight", "fc1.weight"], amount=0.5)
    return doc


def old_target(folder: Path, ext: str) -> tuple[Path, bytes]:
    """An existing export the user cares about, and its bytes."""
    target = folder / f"model.{ext}"
    Document.demo("lenet").export(target)
    return target, target.read_bytes()


def assert_intact(target: Path, before: bytes, *, folder: Path | None = None) -> None:
    """The old target is byte-identical and its folder holds nothing else (no temporary file)."""
    assert target.read_bytes() == before
    assert sorted(os.listdir(folder or target.parent)) == [target.name]


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    return message


def _raiser(exc: BaseException) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise exc

    return fail


VERIFIERS = {"pt": "_verify_torch", "safetensors": "_verify_safetensors", "h5": "_verify_hdf5"}

# stage -> (what to break, the words the ExportError must carry)
STAGES: dict[str, tuple[Callable[[pytest.MonkeyPatch, str], None], str]] = {
    "temp-file": (lambda mp, ext: mp.setattr(atomic.tempfile, "mkstemp", _raiser(
        PermissionError(errno.EACCES, "Permission denied"))), "cannot write in"),
    "fsync": (lambda mp, ext: mp.setattr(atomic.os, "fsync", _raiser(OSError(errno.EIO, "Input/output error"))),
              "Input/output error"),
    "verify": (lambda mp, ext: mp.setattr(writers, VERIFIERS[ext], _raiser(ValueError("reads back wrong"))),
               "reads back wrong"),
    "permissions": (lambda mp, ext: mp.setattr(atomic.os, "chmod", _raiser(
        PermissionError(errno.EPERM, "Operation not permitted"))), "Operation not permitted"),
    "rename": (lambda mp, ext: mp.setattr(atomic.os, "replace", _raiser(
        OSError(errno.EXDEV, "Invalid cross-device link"))), "cross-device"),
}


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("stage", list(STAGES))
def test_fault_at_each_stage_keeps_the_old_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str, ext: str
) -> None:
    """A fault at any stage before the rename completes: one-line ExportError naming the cause, the old target
    byte-identical, no temporary file, the document still marked modified."""
    target, before = old_target(tmp_path, ext)
    doc = pruned_doc()
    breaker, words = STAGES[stage]
    breaker(monkeypatch, ext)
    with pytest.raises(ExportError) as info:
        doc.export(target)
    assert words in one_line(info.value) and target.name in str(info.value)
    monkeypatch.undo()
    assert_intact(target, before)
    assert doc.modified
    doc.export(target)  # with the fault gone the same export works
    assert target.read_bytes() != before


def test_failed_fsync_of_the_folder_after_the_rename_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the rename is done the new file is in place; a folder that cannot be fsynced does not fail the export."""
    target, before = old_target(tmp_path, "pt")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    doc = pruned_doc()
    doc.export(target)
    assert target.read_bytes() != before and os.listdir(tmp_path) == [target.name]
    assert not doc.modified


# -- a full disk, in a child process limited by RLIMIT_FSIZE ------------------------------------------------------

FULL_DISK_CHILD = textwrap.dedent("""
    import json, resource, signal, sys
    from sparsegui.core.document import Document
    from sparsegui.core.errors import ExportError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    results = {}
    for target in sys.argv[2:]:
        try:
            doc.export(target)
            results[target] = "written"
        except ExportError as exc:
            results[target] = str(exc)
    print(json.dumps(results))
""")

LIMIT = 64 * 1024  # a LeNet export is about 250 KB


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("SPARSEGUI_DEBUG", None)
    return env


def test_full_disk_keeps_the_old_targets(tmp_path: Path) -> None:
    """Every format, written by a process whose file-size limit is below the export's size: each export fails with
    a one-line ExportError ("File too large"), the old targets are byte-identical, no temporary file is left."""
    olds = {ext: old_target(tmp_path, ext) for ext in EXTS}
    assert all(len(data) > LIMIT for _, data in olds.values())
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(LIMIT), *(str(t) for t, _ in olds.values())],
                          capture_output=True, text=True, env=child_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    results = json.loads(proc.stdout)
    for target, before in olds.values():
        message = results[str(target)]
        assert "File too large" in message and "\n" not in message, message
        assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == sorted(t.name for t, _ in olds.values())


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_full_disk_through_the_cli(tmp_path: Path) -> None:
    """``sparsegui apply`` on a full disk: exit 2, one 'error:' line, the old output byte-identical."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"steps": [{"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight"], '
                      '"amount": 0.5}]}')
    out = tmp_path / "out" / "model.safetensors"
    out.parent.mkdir()
    Document.demo("lenet").export(out)
    before = out.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "sparsegui", "apply", str(recipe), "--demo", "lenet", "-o", str(out)],
                          capture_output=True, text=True, env=child_env(), timeout=120, preexec_fn=_limit_file_size)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: ") and "File too large" in proc.stderr
    assert_intact(out, before)


# -- a read-only folder ----------------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions; test_fault_at_each_stage_keeps_the_"
                    "old_target[temp-file] simulates the refusal instead")
@pytest.mark.parametrize("ext", EXTS)
def test_read_only_folder(tmp_path: Path, ext: str) -> None:
    """A folder the user may not write: one-line ExportError, the old target byte-identical, nothing created."""
    target, before = old_target(tmp_path, ext)
    os.chmod(tmp_path, 0o555)
    try:
        doc = pruned_doc()
        with pytest.raises(ExportError) as info:
            doc.export(target)
        assert "cannot write" in one_line(info.value)
        assert_intact(target, before)
    finally:
        os.chmod(tmp_path, 0o755)


# -- a symlink as the target ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("how", ["absolute", "relative", "chain"])
def test_symlink_target_is_kept_and_its_file_replaced(tmp_path: Path, ext: str, how: str) -> None:
    """Exporting to a symlink replaces the file it points to (in that file's folder) and leaves the link as it was;
    no temporary file is left in either folder."""
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    real, before = old_target(real_dir, ext)
    link = link_dir / f"current.{ext}"
    if how == "absolute":
        link.symlink_to(real)
    elif how == "relative":
        link.symlink_to(Path("..") / "real" / real.name)
    else:
        (link_dir / f"middle.{ext}").symlink_to(real)
        link.symlink_to(f"middle.{ext}")
    links_before = {p.name: os.readlink(p) for p in link_dir.iterdir()}
    doc = pruned_doc()
    assert doc.export(link) == link
    assert {p.name: os.readlink(p) for p in link_dir.iterdir() if p.is_symlink()} == links_before
    assert sorted(os.listdir(link_dir)) == sorted(links_before)
    assert os.listdir(real_dir) == [real.name] and real.read_bytes() != before
    reopened = load_model(link).model.state_dict()
    assert torch.equal(reopened["fc1.weight"], doc.model.fc1.weight.detach())


def test_failed_export_through_a_symlink_keeps_link_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing export through a symlink: the pointed-to file byte-identical, the link unchanged, no temporary."""
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real, before = old_target(real_dir, "pt")
    link = tmp_path / "model.pt"
    link.symlink_to(real)
    monkeypatch.setattr(atomic.os, "replace", _raiser(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(ExportError):
        pruned_doc().export(link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert_intact(real, before)
    assert os.listdir(tmp_path) == sorted(["model.pt", "real"])


def test_dangling_symlink_target_gets_its_file(tmp_path: Path) -> None:
    """A link to a file that does not exist yet: the export creates that file and the link keeps pointing at it."""
    link = tmp_path / "model.safetensors"
    link.symlink_to("weights-v2.safetensors")
    pruned_doc().export(link)
    assert link.is_symlink() and os.readlink(link) == "weights-v2.safetensors"
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors", "weights-v2.safetensors"]
    assert load_model(link).source.format == "safetensors"


# -- the process killed mid-export ---------------------------------------------------------------------------------

KILLED_CHILD = textwrap.dedent("""
    import os, sys, threading, time
    from sparsegui.core.document import Document
    from sparsegui.core.export import writers

    said = threading.Lock()

    def stall(write):
        # write the real file, cut it to half (a write in progress), say where it is, then wait to be killed
        def stalled(path, *args, **kwargs):
            write(path, *args, **kwargs)
            os.truncate(path, os.path.getsize(path) // 2)
            with said:  # three threads say it at once: one whole line each
                print("WRITING", path, flush=True)
            time.sleep(600)
        return stalled

    for name in ("_write_torch", "_write_safetensors", "_write_hdf5"):
        setattr(writers, name, stall(getattr(writers, name)))
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    for target in sys.argv[1:]:
        threading.Thread(target=doc.export, args=(target,), daemon=True).start()
    time.sleep(600)
""")


def test_killed_mid_export_leaves_old_targets_and_next_export_cleans_up(tmp_path: Path) -> None:
    """SIGKILL while three exports (one per format) are writing their temporary files: each old target is
    byte-identical; the killed process's temporaries are the only extra files, and the next export of each target
    removes its stale temporary."""
    olds = {ext: old_target(tmp_path, ext) for ext in EXTS}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, *(str(t) for t, _ in olds.values())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        assert proc.stdout is not None
        temps = [Path(proc.stdout.readline().split(" ", 1)[1].strip()) for _ in EXTS]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert all(t.parent == tmp_path and t.exists() for t in temps)
    marks = [re.fullmatch(r"\.model\.(pt|safetensors|h5)\.sparsegui-(\d+)-\w+\.tmp", t.name) for t in temps]
    assert all(marks), [t.name for t in temps]
    assert {m.group(2) for m in marks if m} == {str(proc.pid)}, "a temporary file names its process"
    expected = sorted([*(t.name for t, _ in olds.values()), *(t.name for t in temps)])
    assert sorted(os.listdir(tmp_path)) == expected
    for target, before in olds.values():
        assert target.read_bytes() == before
        assert load_model(target).model.fc1.weight.count_nonzero() == 120 * 400
    for target, _ in olds.values():
        pruned_doc().export(target)
    assert sorted(os.listdir(tmp_path)) == sorted(t.name for t, _ in olds.values())
    assert load_model(olds["h5"][0]).model.fc1.weight.count_nonzero() == 120 * 400 // 2


def test_temporary_of_a_running_export_is_kept(tmp_path: Path) -> None:
    """Housekeeping removes temporaries of dead processes only: one naming a live process (this one) stays."""
    target = tmp_path / "model.pt"
    live = tmp_path / f".model.pt.sparsegui-{os.getpid()}-abc12345.tmp"
    live.write_bytes(b"another export in progress")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".model.pt.sparsegui-{int(dead.stdout)}-def45678.tmp"
    stale.write_bytes(b"left by a killed export")
    other = tmp_path / f".other.pt.sparsegui-{int(dead.stdout)}-ghi78901.tmp"
    other.write_bytes(b"another target's temporary")
    assert remove_stale_temps(target) == [stale]
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name])
