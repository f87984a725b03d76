"""Streaming exports write ``X_orig * X_mask`` piece by piece: bit for bit what torch's product holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from sparsegui.core.document import Document
from sparsegui.core.loading import LoadedModel, SourceInfo


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_pieces_equal_the_product_bit_for_bit(dtype: torch.dtype, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 97)).to(dtype)
    with torch.no_grad():  # the entries where a product and a select differ: NaN, ±Inf, -0
        model[0].weight[0, :6] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, -1.5])
    doc = Document(LoadedModel(model, SourceInfo(format="test", key_order=list(model.state_dict()))))
    doc.prune("random_unstructured", ["0.weight"], amount=0.6, seed=1)
    ts = doc.state.tensors["0.weight"]
    chunks = ts.effective_chunks(size=1000)  # pieces that do not divide the tensor
    assert chunks is not None
    streamed = torch.cat([piece.clone() for piece in chunks])
    whole = ts.effective().reshape(-1)
    assert torch.equal(streamed.view(torch.uint8 if dtype != torch.float64 else torch.int64),
                       whole.view(torch.uint8 if dtype != torch.float64 else torch.int64))
    written = load_file(str(doc.export(tmp_path / "out.safetensors")))["0.weight"]
    reference = doc.model[0].weight  # torch's own forward tensor
    assert torch.equal(written.reshape(-1).view(torch.uint8), reference.detach().reshape(-1).contiguous()
                       .view(torch.uint8))


def test_baked_values_and_devices_fall_back_to_the_whole_product() -> None:
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    doc.remove(["fc1.weight"])
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.6)
    assert doc.state.tensors["fc1.weight"].effective_chunks() is None  # a baked tensor: produced whole
    assert doc.state.tensors["fc2.weight"].effective_chunks() is None  # not pruned: written as it is
