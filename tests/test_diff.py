"""Checkpoint diff: statuses, changed fractions, relative change and the Jaccard index of the zeros."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from sparsegui.core.demos import build_demo
from sparsegui.core.diff import diff_documents
from sparsegui.core.document import Document
from tests.test_cli import cli


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    doc = Document.demo("lenet")
    source = doc.export(tmp_path / "lenet.pt")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    pruned_once = doc.export(tmp_path / "once.safetensors")
    doc.prune("random_unstructured", ["fc1.weight", "conv2.weight"], amount=0.3, seed=1)
    pruned_twice = doc.export(tmp_path / "twice-folder")  # a model folder: formats differ
    return {"source": source, "once": pruned_once, "twice": pruned_twice}


def test_a_checkpoint_against_itself_is_all_same(files: dict[str, Path]) -> None:
    doc = Document.open(files["once"])
    result = diff_documents(doc, Document.open(files["once"]))
    assert {t.status for t in result.tensors} == {"same"}
    assert all(t.changed_fraction == 0 and t.relative_change == 0 and t.zero_jaccard == 1.0 for t in result.tensors)
    assert result.totals()["changed_fraction"] == 0


def test_a_pruned_export_against_its_source(files: dict[str, Path]) -> None:
    a, b = Document.open(files["once"]), Document.open(files["twice"])
    result = {t.name: t for t in diff_documents(a, b).tensors}
    for name in ("fc1.weight", "conv2.weight"):
        t = result[name]
        zeros_a = a.state.tensors[name].scan().zeros
        zeros_b = b.state.tensors[name].scan().zeros
        numel = a.state.tensors[name].numel
        assert t.status == "changed"
        assert t.changed_fraction == pytest.approx((zeros_b - zeros_a) / numel)  # the sparsity gained
        assert t.zero_jaccard == pytest.approx(zeros_a / zeros_b)  # Z_A ⊂ Z_B
        wa = a.state.tensors[name].effective().double()
        wb = b.state.tensors[name].effective().double()
        assert t.relative_change == pytest.approx(float(torch.linalg.vector_norm(wb - wa) /
                                                        torch.linalg.vector_norm(wa)), rel=1e-9)
    assert result["fc2.weight"].status == "same"


def test_renamed_added_removed_and_reshaped_tensors(tmp_path: Path) -> None:
    state = build_demo("lenet").state_dict()
    other = dict(state)
    other["head.weight"] = other.pop("fc3.weight")  # renamed: only_a + only_b
    other["extra.bias"] = torch.zeros(3)  # added
    del other["fc2.bias"]  # removed
    other["conv1.bias"] = torch.zeros(7)  # reshaped
    torch.save(state, tmp_path / "a.pt")
    torch.save(other, tmp_path / "b.pt")
    result = {t.name: t for t in diff_documents(Document.open(tmp_path / "a.pt"),
                                                Document.open(tmp_path / "b.pt")).tensors}
    assert result["fc3.weight"].status == "only_a" and result["head.weight"].status == "only_b"
    assert result["extra.bias"].status == "only_b" and result["fc2.bias"].status == "only_a"
    assert result["conv1.bias"].status == "shape_changed"
    assert (result["conv1.bias"].shape_a, result["conv1.bias"].shape_b) == ([6], [7])
    assert result["conv1.weight"].status == "same"


def test_the_cli_prints_json_and_writes_csv(files: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(capsys, "diff", files["source"], files["twice"], "--json", "--csv", tmp_path / "diff.csv").json()
    assert set(out) == {"a", "b", "tensors", "totals"}
    assert set(out["tensors"][0]) == {"name", "status", "shape_a", "shape_b", "sparsity_a", "sparsity_b",
                                      "changed_fraction", "relative_change", "zero_jaccard"}
    assert out["totals"]["changed"] == 2 and out["totals"]["same"] == 8
    rows = list(csv.DictReader((tmp_path / "diff.csv").open()))
    assert rows[0]["name"] == "conv1.weight" and len(rows) == 10
    text = cli(capsys, "diff", files["source"], files["once"])
    assert text.code == 0 and "fc1.weight" in text.out and "1 changed" in text.out
    missing = cli(capsys, "diff", files["source"], tmp_path / "nope.pt")
    assert missing.code == 2 and missing.err.startswith("error: ")
