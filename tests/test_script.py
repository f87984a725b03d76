"""The session as a plain PyTorch script: run with torch alone, it reproduces `sparsegui apply` exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparsegui.core.demos import build_demo
from sparsegui.core.document import Document
from tests.test_cli import cli

TUTORIAL = [
    {"op": "prune", "method": "random_unstructured", "targets": ["conv1.weight"], "amount": 0.3, "seed": 7},
    {"op": "prune", "method": "l1_unstructured", "targets": ["conv1.bias"], "amount": 3},
    {"op": "prune", "method": "ln_structured", "targets": ["conv1.weight"], "amount": 0.5, "n": 2, "dim": 0},
    {"op": "prune", "method": "random_structured", "targets": ["conv2.weight"], "amount": 0.25, "dim": 1,
     "seed": 11},
    {"op": "global", "method": "l1_unstructured", "targets": ["fc1.weight", "fc2.weight"], "amount": 0.4},
    {"op": "global", "method": "random_unstructured", "targets": ["fc3.weight", "conv2.bias"], "amount": 0.5,
     "seed": 3},
    {"op": "prune", "method": "custom_from_mask", "targets": ["fc3.bias"], "mask": "mask.pt"},
    {"op": "prune", "method": "foobar", "targets": ["fc2.bias"], "seed": 1},
    {"op": "prune", "method": "nm_unstructured", "targets": ["fc1.weight"], "keep": 1, "group": 4},
    {"op": "remove", "targets": ["conv1.weight"]},
]

RUN = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
BLOCK_SPARSEGUI = "import sys; sys.modules['sparsegui'] = None; " + RUN


def run_plain(script: Path, output: Path) -> None:
    """Run the script with SparseGUI made unimportable (its plugin module excepted: the recipe names it)."""
    code = BLOCK_SPARSEGUI if "sparsegui.plugins" not in script.read_text() else RUN
    done = subprocess.run([sys.executable, "-c", code, str(script), str(output)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("suffix", "keep_masks"), [(".pt", True), (".safetensors", True), (".pt", False)])
def test_the_script_reproduces_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str,
                                     keep_masks: bool) -> None:
    source = Document.demo("lenet").export(tmp_path / f"lenet{suffix}")
    torch.save(torch.tensor([1.0, 0.0] * 5), tmp_path / "mask.pt")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"steps": TUTORIAL}))
    masks = ["--keep-masks"] if keep_masks else []
    expected = tmp_path / f"apply{suffix}"
    assert cli(capsys, "apply", recipe, source, "-o", expected, *masks).code == 0
    script = tmp_path / "session.py"
    result = cli(capsys, "script", recipe, source, "-o", script, *masks)
    assert result.code == 0, result.err
    text = script.read_text()
    assert "import sparsegui" not in text and "from sparsegui.plugins.foobar import FooBarPruningMethod" in text
    produced = tmp_path / f"script{suffix}"
    run_plain(script, produced)
    load = load_file if suffix == ".safetensors" else (lambda p: torch.load(p, weights_only=True))
    a, b = load(str(expected)), load(str(produced))
    assert set(a) == set(b)
    if suffix == ".pt":
        assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_script_without_plugins_never_imports_sparsegui(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = build_demo("lenet").state_dict()
    torch.save({"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ckpt.pt")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"steps": [
        {"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight"], "amount": 0.5},
        {"op": "prune", "method": "nm_unstructured", "targets": ["fc2.weight"]}]}))
    assert cli(capsys, "script", recipe, tmp_path / "ckpt.pt", "-o", tmp_path / "s.py").code == 0
    assert "sparsegui" not in (tmp_path / "s.py").read_text().split('"""', 2)[2]
    run_plain(tmp_path / "s.py", tmp_path / "out.pt")
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    assert "module.fc1.weight" in out and float((out["module.fc1.weight"] == 0).float().mean()) == 0.5
    doc = Document.open(tmp_path / "ckpt.pt")
    doc.prune("nm_unstructured", ["fc2.weight"])
    assert torch.equal(out["module.fc2.weight"], doc.model.fc2.weight)


def test_sources_a_script_cannot_load_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = Document.demo("lenet").export(tmp_path / "lenet.h5")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"steps": TUTORIAL[1:2]}))
    result = cli(capsys, "script", recipe, source, "-o", tmp_path / "s.py")
    assert result.code == 2 and "HDF5" in result.err and not (tmp_path / "s.py").exists()
