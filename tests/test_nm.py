"""N:M semi-structured pruning: masks against a reference, composition, compliance, eligibility, recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune
from transformers.pytorch_utils import Conv1D

from sparsegui.core.document import Document
from sparsegui.core.errors import PruneError, RecipeError
from sparsegui.core.loading import LoadedModel, SourceInfo
from sparsegui.core.nm import NMUnstructured, compliance, eligibility, nm_unstructured, parse_nm, violations
from sparsegui.core.recipe import apply_recipe
from tests.test_cli import cli


def reference_mask(weight: np.ndarray, keep: int, group: int, in_axis: int) -> np.ndarray:
    """Top-``keep`` |w| of each ``group`` consecutive entries along ``in_axis``, ties to the lower index — by loops."""
    moved = np.moveaxis(np.abs(weight), in_axis, -1)
    mask = np.zeros(moved.shape, dtype=bool)
    for index in np.ndindex(moved.shape[:-1]):
        row = moved[index]
        for start in range(0, row.size, group):
            block = row[start : start + group]
            order = sorted(range(group), key=lambda j: (-block[j], j))[:keep]
            for j in order:
                mask[(*index, start + j)] = True
    return np.moveaxis(mask, -1, in_axis)


def document_of(model: nn.Module) -> Document:
    return Document(LoadedModel(model, SourceInfo(format="test", key_order=list(model.state_dict()))))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(32, 8)
        self.conv1d = Conv1D(24, 16)  # GPT-2's: weight is (in=16, out=24)
        self.conv = nn.Conv2d(8, 4, 3)


@pytest.fixture
def net() -> Net:
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():  # ties inside groups, so the tie rule is tested too
        model.linear.weight[0, :4] = torch.tensor([0.5, -0.5, 0.5, 0.1])
    return model


@pytest.mark.parametrize(("name", "in_axis"), [("linear.weight", 1), ("conv1d.weight", 0), ("conv.weight", 1)])
@pytest.mark.parametrize(("keep", "group"), [(2, 4), (1, 4), (4, 8)])
def test_masks_equal_the_reference_along_the_input_axis(net: Net, name: str, in_axis: int, keep: int,
                                                        group: int) -> None:
    weight = net.get_parameter(name).detach().clone()
    doc = document_of(net)
    assert doc.structure.tensors[name].axes.index("in") == in_axis
    doc.prune("nm_unstructured", [name], keep=keep, group=group)
    module = doc.model.get_submodule(name.split(".")[0])
    expected = reference_mask(weight.numpy(), keep, group, in_axis)
    assert np.array_equal(module.weight_mask.numpy() == 1, expected)
    assert compliance(module.weight, keep, group, in_axis) == 1.0
    assert torch.equal(module.weight, weight * module.weight_mask)


def test_the_method_works_in_plain_torch_and_matches_sparsegui(net: Net) -> None:
    plain = Net()
    plain.load_state_dict(net.state_dict())
    nm_unstructured(plain.conv1d, "weight", keep=2, group=4, dim=0)
    doc = document_of(net)
    doc.prune("nm_unstructured", ["conv1d.weight"])
    assert torch.equal(doc.model.conv1d.weight_mask, plain.conv1d.weight_mask)
    assert isinstance(plain.conv1d._forward_pre_hooks[next(iter(plain.conv1d._forward_pre_hooks))], NMUnstructured)


def test_it_composes_with_earlier_pruning_like_torch_and_undoes(net: Net) -> None:
    reference = Net()
    reference.load_state_dict(net.state_dict())
    prune.random_unstructured(reference.linear, "weight", amount=0.3)
    first = reference.linear.weight_mask.clone()
    NMUnstructured.apply(reference.linear, "weight", keep=2, group=4, dim=1)
    doc = document_of(net)
    doc.prune("custom_from_mask", ["linear.weight"], mask=first)
    before = doc.state
    doc.prune("nm_unstructured", ["linear.weight"])
    mask = doc.model.linear.weight_mask
    assert torch.equal(mask, reference.linear.weight_mask)
    assert bool((mask <= first).all())  # nothing pruned before comes back
    assert compliance(doc.model.linear.weight, 2, 4, 1) == 1.0
    assert type(doc.model.linear._forward_pre_hooks[next(iter(doc.model.linear._forward_pre_hooks))]).__name__ \
        == "PruningContainer"
    doc.undo()
    assert doc.state is before


def test_a_recipe_replays_to_the_same_masks(net: Net, tmp_path: Path) -> None:
    doc = document_of(net)
    doc.prune("nm_unstructured", ["linear.weight", "conv1d.weight"], keep=1, group=2)
    recipe = doc.recipe()
    assert recipe["steps"][0] == {"op": "prune", "method": "nm_unstructured",
                                  "targets": ["linear.weight", "conv1d.weight"], "keep": 1, "group": 2}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    fresh = Net()
    fresh.load_state_dict({k.removesuffix("_orig"): v for k, v in doc.model.state_dict().items()
                           if not k.endswith("_mask")})
    replay = document_of(fresh)
    apply_recipe(replay, json.loads((tmp_path / "r.json").read_text()))
    for module in ("linear", "conv1d"):
        assert torch.equal(replay.model.get_submodule(module).weight_mask,
                           doc.model.get_submodule(module).weight_mask)


@pytest.mark.parametrize(("targets", "settings", "said"), [
    (["linear.bias"], {}, "linear.bias: its input axis is unknown"),
    (["conv.weight"], {"group": 3}, "conv.weight: 8 entries along dim 1 (its input axis) are not a multiple of "
                                    "the group size 3"),
    (["linear.weight"], {"keep": 4, "group": 4}, "keep=4 must be from 1 to 3"),
    (["linear.weight"], {"keep": 0}, "keep=0 must be from 1 to 3"),
])
def test_bad_settings_are_refused_naming_the_tensor_and_nothing_changes(net: Net, targets: list[str],
                                                                         settings: dict[str, int], said: str) -> None:
    doc = document_of(net)
    before = doc.state
    with pytest.raises(PruneError, match=said.replace("(", r"\(").replace(")", r"\)")):
        doc.prune("nm_unstructured", targets, **settings)
    assert doc.state is before


def test_other_methods_refuse_keep_and_a_recipe_checks_their_type() -> None:
    doc = Document.demo("lenet")
    with pytest.raises(PruneError, match="takes no keep or group"):
        doc.prune("l1_unstructured", ["fc1.weight"], amount=0.2, keep=2)
    with pytest.raises(RecipeError, match="'keep' must be a whole number"):
        apply_recipe(doc, {"steps": [{"op": "prune", "method": "nm_unstructured", "targets": ["fc1.weight"],
                                      "keep": "2"}]})


def test_compliance_and_violations_count_groups() -> None:
    weight = torch.tensor([[1.0, 2.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0],
                           [0.0, 0.0, 0.0, 3.0, 1.0, 1.0, 1.0, 1.0]])
    assert compliance(weight, 2, 4, 1) == 0.5  # groups: 2, 3, 1, 4 nonzeros
    bad = violations(weight, 2, 4, 1)
    assert bad.tolist() == [[False] * 4 + [True] * 4, [False] * 4 + [True] * 4]
    assert compliance(weight.T, 2, 4, 0) == 0.5
    assert parse_nm("2:4") == (2, 4)
    with pytest.raises(ValueError, match="not an N:M pattern"):
        parse_nm("2/4")


@pytest.mark.parametrize(("shape", "dtype", "axes", "cutlass", "nvidia"), [
    ((4096, 4096), torch.bfloat16, ("out", "in"), True, True),
    ((768, 2304), torch.float16, ("in", "out"), True, True),  # Conv1D: 2304 out × 768 in
    ((8, 32), torch.bfloat16, ("out", "in"), False, True),  # fewer than 32 rows
    ((4096, 4104), torch.float32, ("out", "in"), False, False),  # 4104 % 16 != 0
    ((64, 64), torch.float64, ("out", "in"), False, True),  # not a dtype of the kernels
    ((64, 8, 3, 3), torch.float16, ("out", "in", "kernel", "kernel"), False, False),
])
def test_eligibility_follows_torch_and_nvidia_rules(shape: tuple[int, ...], dtype: torch.dtype,
                                                    axes: tuple[str, ...], cutlass: bool, nvidia: bool) -> None:
    found = {e.target: e for e in eligibility(shape, dtype, axes)}
    assert found["PyTorch semi-structured (CUTLASS)"].ok is cutlass
    assert found["NVIDIA 2:4 (ModelOpt, TensorRT)"].ok is nvidia
    for e in found.values():
        assert e.reason


def test_inspect_nm_reports_compliance_per_tensor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = Document.demo("lenet")
    doc.prune("nm_unstructured", ["fc1.weight"])
    doc.prune("l1_unstructured", ["fc2.weight"], amount=0.5)
    path = doc.export(tmp_path / "nm.safetensors")
    report = cli(capsys, "inspect", path, "--json", "--nm", "2:4").json()
    tensors = {f"{m['name']}.{t['name']}": t for m in report["modules"] for t in m["tensors"]}
    assert tensors["fc1.weight"]["nm_compliance"] == 1.0
    expected = compliance(doc.model.fc2.weight, 2, 4, 1)
    assert 0 < expected < 1 and tensors["fc2.weight"]["nm_compliance"] == pytest.approx(expected)
    assert report["nm"] == "2:4"
    assert "nm_compliance" not in tensors["fc1.bias"]  # no input axis
    assert "nm_compliance" not in cli(capsys, "inspect", path, "--json").json()["modules"][3]["tensors"][0]
    bad = cli(capsys, "inspect", path, "--nm", "2-4")
    assert bad.code == 2 and bad.err.startswith("error: ") and "2:4" in bad.err
