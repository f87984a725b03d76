"""The open model never changes behind the user's back: a checkpoint written to by another program after it was
opened (a training loop saving ``last.pt`` again) is noticed before every operation and export, and never silently
used. Small files are read into memory, so the open model is intact and only a warning says so; a big file is
memory-mapped, so an in-place rewrite refuses operations and exports until the file is reopened. A file replaced
by another (a rename: atomic savers) or removed leaves what was mapped intact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sparsegui.core import loading
from sparsegui.core.document import Document, SourceChanged
from sparsegui.core.loading import load_model
from tests.helpers import assert_same_tensors


def lenet_state(scale: float = 1.0) -> dict[str, torch.Tensor]:
    state = Document.demo("lenet").model.state_dict()
    return {k: v * scale for k, v in state.items()}


def write(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Write ``state`` into ``path`` in place (the same inode, as ``torch.save`` onto an existing file does)."""
    if path.suffix == ".safetensors" and not path.exists():
        save_file(state, str(path))
    elif path.suffix == ".safetensors":
        tmp = path.with_suffix(".tmp")
        save_file(state, str(tmp))
        data = tmp.read_bytes()
        tmp.unlink()
        with path.open("r+b") as handle:
            handle.write(data)
            handle.truncate()
    else:
        torch.save(state, path)


@pytest.fixture(params=[".pt", ".safetensors"])
def source(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    path = tmp_path / f"model{request.param}"
    write(path, lenet_state())
    return path


def test_small_files_are_read_into_memory_and_a_rewrite_only_warns(source: Path, tmp_path: Path) -> None:
    doc = Document.open(source)
    assert doc.source.in_memory
    inode = source.stat().st_ino
    write(source, lenet_state(2.0))
    assert source.stat().st_ino == inode  # rewritten in place
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    assert any("written to by another program" in w and "still what was read" in w for w in doc.source.warnings)
    out = tmp_path / "out.pt"
    doc.export(out)
    clean = load_model(out).model.state_dict()
    assert torch.equal(clean["conv1.weight"], lenet_state()["conv1.weight"])  # what was opened, not the new file


def test_a_rewritten_memory_mapped_file_refuses_operations_and_exports(source: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "COPY_LIMIT", 0)  # every file is "big": memory-mapped
    doc = Document.open(source)
    assert not doc.source.in_memory
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    state = doc.state
    write(source, lenet_state(2.0))
    out = tmp_path / "out.pt"
    for attempt in (lambda: doc.prune("l1_unstructured", ["fc2.weight"], amount=0.5),
                    lambda: doc.export(out), lambda: doc.export_masks(tmp_path / "m.h5"),
                    lambda: doc.move_to("cpu")):
        with pytest.raises(SourceChanged) as info:
            attempt()
        assert "\n" not in str(info.value) and f"{source.name} was written to by another program" in str(info.value)
    assert doc.state is state and not out.exists()
    assert doc.recipe()["steps"]  # the steps can still be saved, to replay on the reopened file


def test_a_file_replaced_by_rename_keeps_the_open_model(source: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Atomic savers write a new file and rename it over the old one: what was mapped lives on unchanged."""
    monkeypatch.setattr(loading, "COPY_LIMIT", 0)
    doc = Document.open(source)
    fresh = tmp_path / f"new{source.suffix}"
    write(fresh, lenet_state(3.0))
    os.replace(fresh, source)
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    assert any("replaced by another file" in w for w in doc.source.warnings)
    out = tmp_path / "out.pt"
    doc.export(out)
    assert torch.equal(load_model(out).model.state_dict()["conv1.weight"], lenet_state()["conv1.weight"])


def test_shards_are_watched_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sharded model's index and every shard are checked."""
    monkeypatch.setattr(loading, "COPY_LIMIT", 0)
    state = lenet_state()
    keys = list(state)
    halves = {"a.safetensors": keys[:5], "b.safetensors": keys[5:]}
    for shard, names in halves.items():
        save_file({k: state[k].contiguous() for k in names}, str(tmp_path / shard))
    index = tmp_path / "model.safetensors.index.json"
    import json

    index.write_text(json.dumps({"metadata": {}, "weight_map": {k: s for s, ns in halves.items() for k in ns}}))
    doc = Document.open(index)
    assert [Path(f.path).name for f in doc.source.files] == [index.name, "a.safetensors", "b.safetensors"]
    write(tmp_path / "b.safetensors", {k: state[k] * 2 for k in halves["b.safetensors"]})
    with pytest.raises(SourceChanged, match=r"b\.safetensors was written to"):
        doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)


def test_nothing_changed_nothing_said(source: Path) -> None:
    doc = Document.open(source)
    assert doc.check_source("anything") is None
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    assert doc.source.warnings == []
    assert_same_tensors(Document.open(source).model.state_dict(), lenet_state(), ordered=False)
