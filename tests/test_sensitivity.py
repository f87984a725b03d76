"""Sensitivity scans and plans: every number against a direct torch computation; the model is left bit-identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import prune

from sparsegui.core.document import Document
from sparsegui.core.errors import LoadError, PruneError
from sparsegui.core.inputs import Inputs, load_inputs
from sparsegui.core.plan import make_plan
from sparsegui.core.recipe import apply_recipe
from sparsegui.core.sensitivity import DEFAULT_LEVELS, scan
from tests.helpers import assert_same_state, full_state
from tests.test_cli import cli


def norm_removed(weight: torch.Tensor, mask: torch.Tensor) -> float:
    w = weight.detach().double()
    return float(torch.linalg.vector_norm(w * (1 - mask.double())) / torch.linalg.vector_norm(w))


def fresh_lenet(doc: Document) -> nn.Module:
    """The demo's model as loaded, in plain torch (``doc`` unpruned or pruned: its originals)."""
    model = type(doc.model)()
    state = doc.model.state_dict()
    model.load_state_dict({k.removesuffix("_orig"): v for k, v in state.items() if not k.endswith("_mask")})
    return model


@pytest.mark.parametrize(("method", "settings"), [("l1_unstructured", {}), ("random_unstructured", {"seed": 3}),
                                                  ("ln_structured", {"n": 2, "dim": 0})])
def test_norm_removed_at_each_level_equals_torch(method: str, settings: dict[str, int]) -> None:
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc2.weight"], amount=0.2)  # a tensor already pruned: levels stack on it
    before = full_state(doc.model)
    result = scan(doc, ["fc2.weight", "conv2.weight"], DEFAULT_LEVELS, method, **settings)
    assert_same_state(full_state(doc.model), before)  # bit-identical
    assert [c.name for c in result.curves] == ["conv2.weight", "fc2.weight"]
    for curve in result.curves:
        module_name, local = curve.name.split(".")
        for level, value in zip(result.levels, curve.values, strict=True):
            model = fresh_lenet(doc)
            module = model.get_submodule(module_name)
            if curve.name == "fc2.weight":
                prune.l1_unstructured(module, local, amount=0.2)
            seed = settings.get("seed")
            if seed is not None:
                torch.manual_seed(seed)
            kwargs = {k: v for k, v in settings.items() if k != "seed"}
            getattr(prune, method)(module, local, amount=level, **kwargs)
            orig = getattr(module, local + "_orig")
            assert value == pytest.approx(norm_removed(orig, getattr(module, local + "_mask")), rel=1e-9, abs=1e-12)


def test_output_drift_equals_a_hand_written_forward() -> None:
    torch.manual_seed(0)
    doc = Document.demo("lenet")
    x = torch.randn(3, 1, 28, 28)
    result = scan(doc, ["fc1.weight"], [0.3, 0.8], inputs=Inputs((x,)))
    assert result.signal == "output_drift"
    model = fresh_lenet(doc).eval()
    with torch.no_grad():
        reference = model(x)
    for level, value in zip(result.levels, result.curves[0].values, strict=True):
        pruned = fresh_lenet(doc).eval()
        prune.l1_unstructured(pruned.fc1, "weight", amount=level)
        with torch.no_grad():
            out = pruned(x)
        expected = float(torch.linalg.vector_norm((out - reference).double()) / torch.linalg.vector_norm(
            reference.double()))
        assert value == pytest.approx(expected, rel=1e-6)
    assert result.curves[0].values[0] < result.curves[0].values[1]


def test_drift_works_on_a_handed_out_model_and_puts_it_back() -> None:
    doc = Document.demo("lenet")
    doc.prune("random_unstructured", ["fc1.weight"], amount=0.5, seed=0)
    model = doc.model  # torch form, with hooks
    before = full_state(model)
    x = torch.randn(2, 1, 28, 28)
    first = scan(doc, ["fc1.weight", "fc3.weight"], [0.5], inputs=Inputs((x,)))
    assert_same_state(full_state(doc.model), before)
    other = Document.demo("lenet")
    other.prune("random_unstructured", ["fc1.weight"], amount=0.5, seed=0)
    second = scan(other, ["fc1.weight", "fc3.weight"], [0.5], inputs=Inputs((x,)))  # never handed out
    assert first.to_json() == second.to_json()


def test_drift_needs_a_real_architecture(tmp_path: Path) -> None:
    doc = Document.demo("lenet")
    torch.save(doc.model.state_dict(), tmp_path / "sd.pt")
    rebuilt = Document.open(tmp_path / "sd.pt")
    with pytest.raises(PruneError, match="output drift needs the model's real architecture"):
        scan(rebuilt, ["fc1.weight"], [0.5], inputs=Inputs((torch.randn(1, 1, 28, 28),)))
    with pytest.raises(PruneError, match="cannot run on these inputs"):
        scan(doc, ["fc1.weight"], [0.5], inputs=Inputs((torch.randn(1, 3),)))


def test_inputs_files_are_data(tmp_path: Path) -> None:
    x = torch.randn(2, 4)
    torch.save((x, x + 1), tmp_path / "pair.pt")
    assert [t.tolist() for t in load_inputs(tmp_path / "pair.pt").args] == [x.tolist(), (x + 1).tolist()]
    save_file({"input_ids": torch.ones(1, 3, dtype=torch.long)}, tmp_path / "kw.safetensors")
    assert list(load_inputs(tmp_path / "kw.safetensors").kwargs) == ["input_ids"]
    torch.save({"a": "text"}, tmp_path / "bad.pt")
    with pytest.raises(LoadError, match="inputs must be tensors"):
        load_inputs(tmp_path / "bad.pt")
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(LoadError, match="cannot read inputs"):
        load_inputs(tmp_path / "module.pt")  # a pickled module is code: weights_only refuses it


@pytest.mark.parametrize("target", [0.3, 0.5, 0.77])
def test_the_plan_hits_its_target_and_beats_uniform(target: float) -> None:
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["conv2.weight"], amount=0.1)
    result = scan(doc, ["*.weight"])
    plan = make_plan(result, doc.state, target)
    total = sum(plan.numel.values())
    assert sum(plan.before.values()) + sum(plan.counts.values()) == round(target * total)
    assert plan.planned_signal <= plan.uniform_signal + 1e-12
    apply_recipe(doc, plan.recipe())
    prunings = [doc.state.tensors[n].pruning for n in plan.names]
    zeros = sum(p.mask.zeros for p in prunings if p is not None)
    assert zeros == round(target * total)  # exact to the entry after replaying the recipe


def test_plans_refuse_what_the_scan_cannot_say() -> None:
    doc = Document.demo("lenet")
    result = scan(doc, ["fc2.weight", "fc3.weight"], [0.1, 0.5])
    with pytest.raises(PruneError, match=r"scan goes up to 0\.5"):
        make_plan(result, doc.state, 0.8)
    doc.prune("l1_unstructured", ["fc2.weight", "fc3.weight"], amount=0.6)
    with pytest.raises(PruneError, match=r"already 60\.00% sparse"):
        make_plan(scan(doc, ["fc2.weight", "fc3.weight"], [0.5]), doc.state, 0.3)


def test_cli_json_csv_and_plan_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path, plan_path = tmp_path / "scan.csv", tmp_path / "plan.json"
    out = cli(capsys, "sensitivity", "--demo", "lenet", "--targets", "fc*.weight", "--levels", "0.25,0.5,0.75",
              "--json", "--csv", csv_path, "--target", "0.5", "--plan-out", plan_path).json()
    assert out["signal"] == "norm_removed" and out["levels"] == [0.25, 0.5, 0.75]
    assert [t["name"] for t in out["tensors"]] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert all(len(t["values"]) == 3 for t in out["tensors"])
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "parameter,sparsity,norm_removed" and lines[1].startswith("fc1.weight,0.25,")
    assert len(lines) == 1 + 3 * 3
    recipe = json.loads(plan_path.read_text())
    assert out["plan"]["overall"] == pytest.approx(0.5, abs=1 / 58920)
    applied = cli(capsys, "apply", plan_path, "--demo", "lenet", "-o", tmp_path / "pruned.safetensors")
    assert applied.code == 0 and recipe["steps"]
    assert cli(capsys, "sensitivity", "--demo", "lenet", "--plan-out", plan_path).code == 2
    bad = cli(capsys, "sensitivity", "--demo", "lenet", "--method", "nm_unstructured")
    assert bad.code == 2 and "takes no amount" in bad.err
