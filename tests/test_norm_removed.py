"""Norm removed, ‖W ⊙ (1 − M)‖₂ / ‖W‖₂, against direct torch computations on the real pruned modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sparsegui.core.document import Document
from sparsegui.core.energy import measure
from sparsegui.core.loading import LoadedModel, SourceInfo
from sparsegui.core.stats import Totals, count_all
from tests.test_cli import cli


def reference(weight: torch.Tensor, effective: torch.Tensor) -> float:
    """‖W − W_eff‖ / ‖W‖ in float64: the energy the zeros took, W as loaded."""
    w, e = weight.detach().double(), effective.detach().double()
    return float(torch.linalg.vector_norm(w - e) / torch.linalg.vector_norm(w))


def document_of(model: nn.Module) -> Document:
    return Document(LoadedModel(model, SourceInfo(format="test", key_order=list(model.state_dict()))))


def test_each_method_matches_torch_on_the_real_module() -> None:
    doc = Document.demo("lenet")
    loaded = {n: p.detach().clone() for n, p in doc.model.named_parameters()}
    doc.prune("l1_unstructured", ["conv1.weight"], amount=0.3)
    doc.prune("random_unstructured", ["fc1.weight"], amount=0.6, seed=3)
    doc.prune("ln_structured", ["conv2.weight"], amount=0.5, n=2, dim=0)
    doc.prune("random_structured", ["fc2.weight"], amount=0.25, dim=1, seed=1)
    doc.global_prune("l1_unstructured", ["fc3.weight", "fc2.weight"], amount=0.4)
    model = doc.model
    for name in ("conv1.weight", "fc1.weight", "conv2.weight", "fc2.weight", "fc3.weight"):
        module_name, local = name.rsplit(".", 1)
        module = model.get_submodule(module_name)
        orig, mask = getattr(module, local + "_orig"), getattr(module, local + "_mask")
        expected = reference(orig, orig * mask)
        assert torch.equal(orig, loaded[name])
        assert measure(doc.state.tensors[name]).norm_removed == pytest.approx(expected, rel=1e-12)
    assert measure(doc.state.tensors["fc1.bias"]).norm_removed == 0.0


def test_after_remove_it_stays_relative_to_the_weights_as_loaded() -> None:
    doc = Document.demo("lenet")
    loaded = doc.model.fc1.weight.detach().clone()
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.3)
    doc.remove(["fc1.weight"])
    doc.prune("random_unstructured", ["fc1.weight"], amount=0.5, seed=0)
    effective = doc.model.fc1.weight
    value = measure(doc.state.tensors["fc1.weight"]).norm_removed
    assert value == pytest.approx(reference(loaded, effective), rel=1e-12)
    doc.undo()  # back to the removed product: the remove's mask still counts
    after_remove = doc.model.fc1.weight
    assert measure(doc.state.tensors["fc1.weight"]).norm_removed == pytest.approx(
        reference(loaded, after_remove), rel=1e-12)
    assert 0 < reference(loaded, after_remove) < value


def test_zeros_already_in_the_file_remove_nothing() -> None:
    model = nn.Sequential(nn.Linear(8, 8))
    with torch.no_grad():
        model[0].weight[:, :4] = 0
    doc = document_of(model)
    ts = doc.state.tensors["0.weight"]
    assert ts.scan().zeros == 32 and measure(ts).norm_removed == 0.0
    doc.prune("l1_unstructured", ["0.weight"], amount=32)  # exactly the zeros: nothing more removed
    assert measure(doc.state.tensors["0.weight"]).norm_removed == 0.0


def test_layers_and_the_model_combine_as_one_concatenated_tensor() -> None:
    doc = Document.demo("lenet")
    loaded = {n: p.detach().clone() for n, p in doc.model.named_parameters()}
    doc.prune("l1_unstructured", ["fc1.weight", "fc1.bias", "conv2.weight"], amount=0.5)
    count_all(doc.state, doc.tensor_names())
    totals = Totals(doc.structure, doc.state)
    model = doc.model
    effective = {n: getattr(model.get_submodule(n.rsplit(".", 1)[0]), n.rsplit(".", 1)[1]) for n in loaded}

    def combined(names: list[str]) -> float:
        w = torch.cat([loaded[n].reshape(-1) for n in names])
        e = torch.cat([effective[n].reshape(-1) for n in names])
        return reference(w, e)

    assert totals.module_norm_removed("fc1") == pytest.approx(combined(["fc1.weight", "fc1.bias"]), rel=1e-10)
    assert totals.module_norm_removed("") == pytest.approx(combined(list(loaded)), rel=1e-10)
    assert totals.norm_removed("fc2.weight") == 0.0


def test_bf16_is_measured_in_float64() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32)).to(torch.bfloat16)
    doc = document_of(model)
    original = model[0].weight.detach().clone()
    doc.prune("l1_unstructured", ["0.weight"], amount=0.7)
    mask = doc.model[0].weight_mask
    assert measure(doc.state.tensors["0.weight"]).norm_removed == pytest.approx(
        reference(original, original * mask), rel=1e-12)


def test_inspect_json_reports_norm_removed_for_tensors_modules_and_the_model(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    path = doc.export(tmp_path / "pruned.pt", keep_masks=True)
    report = cli(capsys, "inspect", path, "--json").json()
    fc1 = next(m for m in report["modules"] if m["name"] == "fc1")
    weight = next(t for t in fc1["tensors"] if t["name"] == "weight")
    expected = measure(doc.state.tensors["fc1.weight"]).norm_removed
    assert weight["norm_removed"] == pytest.approx(expected, rel=1e-12) and weight["sparsity"] == 0.5
    assert 0 < report["totals"]["norm_removed"] < expected
    assert fc1["totals"]["norm_removed"] < expected  # the unpruned bias dilutes it


def test_a_tensor_holding_nan_has_no_norm_in_json(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    model = nn.Sequential(nn.Linear(4, 4))
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan
    torch.save(model.state_dict(), tmp_path / "nan.pt")
    report = cli(capsys, "inspect", tmp_path / "nan.pt", "--json").json()
    weight = report["modules"][1]["tensors"][0]
    assert weight["nonfinite"] == 1 and weight["norm_removed"] == 0.0  # nothing pruned: nothing removed
    doc = Document.open(tmp_path / "nan.pt")
    doc.prune("random_unstructured", ["0.weight"], amount=0.5, seed=0)
    assert math.isnan(measure(doc.state.tensors["0.weight"]).norm_removed)
