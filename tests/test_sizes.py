"""Honest sizes against files actually written in each layout, and the statistics files (CSV, Netron)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from sparsegui.core.document import Document
from sparsegui.core.loading import LoadedModel, SourceInfo
from sparsegui.core.sizes import tensor_sizes
from tests.test_cli import cli


def document_of(model: nn.Module) -> Document:
    return Document(LoadedModel(model, SourceInfo(format="test", key_order=list(model.state_dict()))))


def written(tmp_path: Path, name: str, tensors: dict[str, torch.Tensor]) -> int:
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path.stat().st_size


@pytest.fixture
def pruned() -> tuple[Document, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 512)).to(torch.float16)
    doc = document_of(model)
    doc.prune("ln_structured", ["0.weight"], amount=0.25, n=1, dim=0)  # 128 whole output rows
    doc.prune("nm_unstructured", ["0.weight"])  # then 2:4 along the input axis
    return doc, doc.model[0].weight.detach().clone()


def test_each_layout_matches_a_file_written_that_way(pruned: tuple[Document, torch.Tensor], tmp_path: Path) -> None:
    doc, weight = pruned
    sizes = tensor_sizes(doc.state.tensors["0.weight"], ("out", "in"))

    def close(expected: int, actual: int) -> None:
        assert abs(expected - actual) <= 0.01 * actual, (expected, actual)

    close(sizes.dense, written(tmp_path, "dense", {"w": weight}))
    bits = torch.from_numpy(np.packbits((weight != 0).numpy().reshape(-1), bitorder="little"))
    close(sizes.dense_mask, written(tmp_path, "mask", {"w": weight, "mask": bits}))
    csr = weight.to_sparse_csr()
    close(sizes.csr, written(tmp_path, "csr", {"values": csr.values(), "crow": csr.crow_indices().int(),
                                               "col": csr.col_indices().int()}))
    groups = weight.reshape(512, 256, 4)
    order = torch.sort((groups != 0).to(torch.int8), dim=-1, descending=True, stable=True).indices[..., :2]
    kept = torch.gather(groups, -1, order)  # 2 values of every 4
    meta = (order[..., 0] | (order[..., 1] << 2)).to(torch.uint8).reshape(-1)  # 4 bits a group
    packed = (meta[0::2] | (meta[1::2] << 4)).to(torch.uint8)
    assert sizes.nm_2_4 is not None
    close(sizes.nm_2_4, written(tmp_path, "nm", {"values": kept, "meta": packed}))
    rows = weight[(weight != 0).any(dim=1)]
    close(sizes.shrunk, written(tmp_path, "shrunk", {"w": rows[:, (rows != 0).any(dim=0)]}))
    assert sizes.shrunk == 384 * 1024 * 2 and sizes.nm_2_4 < sizes.dense < sizes.csr


def test_a_tensor_that_is_not_2_4_has_no_2_4_size() -> None:
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    sizes = tensor_sizes(doc.state.tensors["fc1.weight"], ("out", "in"))
    assert sizes.nm_2_4 is None and sizes.dense == 48000 * 4
    assert sizes.csr == 24000 * 8 + 121 * 4


def test_inspect_sizes_and_the_statistics_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    source = doc.export(tmp_path / "pruned.safetensors")
    report = cli(capsys, "inspect", source, "--json", "--sizes").json()
    assert report["sizes"]["dense"] == 60074 * 4 and "neither smaller nor faster" in report["sizes_note"]
    fc1 = next(m for m in report["modules"] if m["name"] == "fc1")["tensors"][0]
    assert fc1["sizes"]["csr"] == 24000 * 8 + 121 * 4

    assert cli(capsys, "inspect", source, "--stats-out", tmp_path / "stats.csv", "--sizes").code == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "stats.csv").read_text())))
    assert [r["name"] for r in rows][:3] == ["conv1.weight", "conv1.bias", "conv2.weight"]
    row = next(r for r in rows if r["name"] == "fc1.weight")
    assert (row["shape"], row["zeros"], float(row["sparsity"])) == ("120x400", "24000", 0.5)
    assert float(row["norm_removed"]) == 0.0 and row["bytes_dense"] == "192000"

    assert cli(capsys, "inspect", source, "--stats-out", tmp_path / "netron.json").code == 0
    attachment = json.loads((tmp_path / "netron.json").read_text())
    assert attachment["signature"] == "netron:attachment"
    metric = next(m for m in attachment["metrics"] if m["target"] == "fc1.weight" and m["name"] == "sparsity")
    assert metric == {"kind": "tensor", "target": "fc1.weight", "name": "sparsity", "value": 0.5,
                      "type": "percentage"}
    bad = cli(capsys, "inspect", source, "--stats-out", tmp_path / "stats.txt")
    assert bad.code == 2 and bad.err.startswith("error: ") and not (tmp_path / "stats.txt").exists()
    assert cli(capsys, "inspect", source, "--stats-out", source).code == 2  # never over the input
