"""Outputs never clobber inputs or special files (sparsegui/core/paths.py, sparsegui/core/export/atomic.py).

``-o`` and ``--masks-out`` may not be the model being read (by any spelling, symlink or hard link; for a sharded
index any shard), each other, the recipe or a mask file the recipe reads; an output that is a folder, a FIFO, a socket
or a device, directly or through a symlink, is refused and stays what it was. Each refusal is one ``error:`` line,
exit status 2, every file byte-identical.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sparsegui.core.demos import build_demo
from sparsegui.core.document import Document
from sparsegui.core.errors import ExportError
from sparsegui.core.paths import check_outputs, input_files, same_file
from tests.test_cli import assert_one_line_error, cli

RECIPE = {"steps": [{"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight"], "amount": 0.5}]}


def snapshot(folder: Path) -> dict[str, tuple[str, bytes | str | None]]:
    """Every entry under ``folder``: its kind and bytes (or link target), to compare before and after."""
    out: dict[str, tuple[str, bytes | str | None]] = {}
    for path in sorted(folder.rglob("*")):
        info = os.lstat(path)
        rel = str(path.relative_to(folder))
        if stat.S_ISLNK(info.st_mode):
            out[rel] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            out[rel] = ("file", path.read_bytes())
        else:
            out[rel] = (stat.filemode(info.st_mode)[0], None)
    return out


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A model, its sharded twin and a recipe, in ``tmp_path``."""
    state = build_demo("lenet").state_dict()
    torch.save(state, tmp_path / "model.pt")
    shards = tmp_path / "sharded"
    shards.mkdir()
    keys = list(state)
    weight_map = {}
    for i, part in enumerate((keys[:4], keys[4:]), 1):
        name = f"model-0000{i}-of-00002.safetensors"
        save_file({k: state[k].contiguous() for k in part}, str(shards / name))
        weight_map.update(dict.fromkeys(part, name))
    (shards / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}), encoding="utf-8")
    (tmp_path / "recipe.json").write_text(json.dumps(RECIPE), encoding="utf-8")
    return tmp_path


@pytest.fixture
def inside(work: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(work)
    yield work


def _symlink(link: Path, to: str | Path) -> Path:
    link.symlink_to(to)
    return link


def _hardlink(link: Path, to: Path) -> Path:
    os.link(to, link)
    return link


# Each case builds (arguments for 'sparsegui apply', the words the error must carry), run in the work folder.
CLOBBER: dict[str, Callable[[Path], tuple[list[object], str]]] = {
    "o-is-source": lambda d: (["recipe.json", "model.pt", "-o", "model.pt"], "input file"),
    "o-is-source-respelt": lambda d: (["recipe.json", "model.pt", "-o", "./sharded/../model.pt"], "input file"),
    "o-is-source-absolute": lambda d: (["recipe.json", "model.pt", "-o", d / "model.pt"], "input file"),
    "o-links-to-source": lambda d: (["recipe.json", "model.pt", "-o", _symlink(d / "link.pt", "model.pt")],
                                    "input file"),
    "o-hardlinks-source": lambda d: (["recipe.json", "model.pt", "-o", _hardlink(d / "hard.pt", d / "model.pt")],
                                     "input file"),
    "source-links-to-o": lambda d: (["recipe.json", _symlink(d / "via.pt", "model.pt"), "-o", "model.pt"],
                                    "input file"),
    "o-through-linked-folder": lambda d: (["recipe.json", "model.pt", "-o", _symlink(d / "dir", ".") / "model.pt"],
                                          "input file"),
    "o-is-shard": lambda d: (["recipe.json", "sharded/model.safetensors.index.json", "-o",
                              "sharded/model-00002-of-00002.safetensors"], "model-00002-of-00002"),
    "o-links-to-shard": lambda d: (["recipe.json", "sharded/model.safetensors.index.json", "-o",
                                    _symlink(d / "s.safetensors", "sharded/model-00001-of-00002.safetensors")],
                                   "model-00001-of-00002"),
    "masks-is-source": lambda d: (["recipe.json", "model.pt", "-o", "out.pt", "--masks-out", "model.pt"],
                                  "input file"),
    "masks-is-o": lambda d: (["recipe.json", "model.pt", "-o", "out.pt", "--masks-out", "out.pt"], "other output"),
    "masks-is-o-respelt": lambda d: (["recipe.json", "model.pt", "-o", "out.pt", "--masks-out", f"{d}/./out.pt"],
                                     "other output"),
    "masks-links-to-o": lambda d: (["recipe.json", "--demo", "lenet", "-o", "out.pt", "--masks-out",
                                    _symlink(d / "m.pt", "out.pt")], "other output"),
    "masks-is-o-existing-hardlink": lambda d: (["recipe.json", "--demo", "lenet", "-o",
                                                _hardlink(d / "old.pt", d / "model.pt"), "--masks-out", "model.pt"],
                                               "other output"),
    "o-is-recipe": lambda d: ([_copy(d / "recipe.json", d / "recipe.pt"), "--demo", "lenet", "-o", "recipe.pt"],
                              "recipe.pt"),
    "o-is-mask-file": lambda d: ([_mask_recipe(d), "--demo", "lenet", "-o", "masks.pt"], "masks.pt"),
    "masks-is-mask-file": lambda d: ([_mask_recipe(d), "--demo", "lenet", "-o", "out.pt", "--masks-out",
                                      d / "masks.pt"], "masks.pt"),
}


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _mask_recipe(folder: Path) -> Path:
    torch.save({"fc3.bias": torch.arange(10) % 2 == 0}, folder / "masks.pt")
    path = folder / "mask-recipe.json"
    path.write_text(json.dumps({"steps": [{"op": "prune", "method": "custom_from_mask", "targets": ["fc3.bias"],
                                           "mask": "masks.pt"}]}), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", list(CLOBBER))
def test_apply_refuses_an_output_that_is_an_input_or_another_output(
    capsys: pytest.CaptureFixture[str], inside: Path, case: str
) -> None:
    """One error line naming the clash, exit 2; every file, link and folder exactly as before."""
    args, words = CLOBBER[case](inside)
    before = snapshot(inside)
    assert_one_line_error(cli(capsys, "apply", *args), words)
    assert snapshot(inside) == before


def test_distinct_outputs_still_work(capsys: pytest.CaptureFixture[str], inside: Path) -> None:
    """The checks refuse only clashes: separate -o and --masks-out beside the source are written."""
    before = (inside / "model.pt").read_bytes()
    result = cli(capsys, "apply", "recipe.json", "model.pt", "-o", "out.pt", "--masks-out", "masks.safetensors")
    assert result.code == 0, result.err
    assert (inside / "out.pt").is_file() and (inside / "masks.safetensors").is_file()
    assert (inside / "model.pt").read_bytes() == before


# -- special files ---------------------------------------------------------------------------------------------


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    """A Unix socket file (bound by a relative name: socket paths are limited to about 100 bytes)."""
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path.name)
        sock.close()
    finally:
        os.chdir(cwd)
    return path


def _device(path: Path) -> Path:
    """A character device like /dev/null, made in the test folder (so a regression cannot replace the real one)."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here (not root)")
    return path


SPECIAL: dict[str, Callable[[Path], Path]] = {
    "fifo": lambda d: _fifo(d / "out.pt"),
    "socket": lambda d: _socket(d / "out.pt"),
    "device": lambda d: _device(d / "out.pt"),
    "folder": lambda d: (d / "out.pt").mkdir() or d / "out.pt",
    "link-to-fifo": lambda d: _symlink(d / "out.pt", _fifo(d / "pipe")),
    "link-to-device": lambda d: _symlink(d / "out.pt", _device(d / "null")),
    "link-to-socket": lambda d: _symlink(d / "out.pt", _socket(d / "sock")),
    "link-to-folder": lambda d: _symlink(d / "out.pt", (d / "sub").mkdir() or d / "sub"),
    "link-chain-to-device": lambda d: _symlink(d / "out.pt", _symlink(d / "hop.pt", _device(d / "null"))),
}
KIND_WORDS = {"fifo": "FIFO", "socket": "socket", "device": "character device", "folder": "folder"}


def _words(case: str) -> str:
    return next(w for k, w in KIND_WORDS.items() if k in case)


@pytest.mark.parametrize("case", list(SPECIAL))
def test_export_refuses_special_targets(tmp_path: Path, case: str) -> None:
    """Document.export (what the GUI calls) onto a special file or a link to one: ExportError, nothing replaced,
    no temporary file left."""
    target = SPECIAL[case](tmp_path)
    before = snapshot(tmp_path)
    doc = Document.demo("lenet")
    for export in (lambda: doc.export(target), lambda: doc.export_masks(target)):
        with pytest.raises(ExportError, match=_words(case)) as info:
            export()
        assert "\n" not in str(info.value)
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", list(SPECIAL))
@pytest.mark.parametrize("option", ["-o", "--masks-out"])
def test_apply_refuses_special_targets(
    capsys: pytest.CaptureFixture[str], inside: Path, case: str, option: str
) -> None:
    """The same through the CLI, for either output: refused before the model is loaded."""
    target = SPECIAL[case](inside)
    before = snapshot(inside)
    other = ["--masks-out", "masks.pt"] if option == "-o" else ["-o", "model-out.pt"]
    assert_one_line_error(cli(capsys, "apply", "recipe.json", "model.pt", option, target, *other), _words(case))
    assert snapshot(inside) == before


def test_symlink_to_a_regular_file_is_still_followed(tmp_path: Path) -> None:
    """A link to an ordinary file keeps working: the file gets the new content, the link stays a link."""
    real = tmp_path / "real.pt"
    real.write_bytes(b"old")
    link = _symlink(tmp_path / "link.pt", "real.pt")
    Document.demo("lenet").export(link)
    assert link.is_symlink() and os.readlink(link) == "real.pt"
    assert real.read_bytes() != b"old" and sorted(os.listdir(tmp_path)) == ["link.pt", "real.pt"]


# -- the core helper ------------------------------------------------------------------------------------------


def test_check_outputs_core(work: Path) -> None:
    """check_outputs raises ExportError for each kind of clash, and passes distinct new files."""
    index = work / "sharded" / "model.safetensors.index.json"
    shard = work / "sharded" / "model-00001-of-00002.safetensors"
    check_outputs([work / "a.pt", work / "b.pt"], [work / "model.pt", index, None])
    for outputs, inputs in [
        ([work / "model.pt"], [work / "model.pt"]),
        ([work / "x" / ".." / "model.pt"], [work / "model.pt"]),
        ([shard], [index]),
        ([work / "a.pt", work / "a.pt"], []),
        ([work / "a.pt", work / "sharded" / ".." / "a.pt"], []),
    ]:
        with pytest.raises(ExportError):
            check_outputs(outputs, inputs)
    assert input_files([index]) == [index, shard, work / "sharded" / "model-00002-of-00002.safetensors"]
    assert input_files([work / "recipe.json", None, ""]) == [work / "recipe.json"]
    assert same_file(work / "model.pt", _hardlink(work / "h.pt", work / "model.pt"))
    assert not same_file(work / "model.pt", work / "recipe.json")
