"""Masks as NVIDIA ModelOpt, apex ASP and llm-compressor store them: they open as pruning and export back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsegui.core.demos import build_demo
from sparsegui.core.document import Document
from sparsegui.core.mask_layouts import mask_key
from tests.test_cli import cli

LAYOUT_KEYS = {"modelopt": "fc1._weight_mask", "asp": "fc1.__weight_mma_mask", "llm-compressor": "fc1.mask"}


def tool_checkpoint(tmp_path: Path, layout: str, suffix: str = ".safetensors") -> tuple[Path, dict[str, torch.Tensor]]:
    """LeNet's weights with 2:4-style masks on fc1 and fc2 in ``layout`` (weights zeroed, as the tools save)."""
    torch.manual_seed(0)
    state = build_demo("lenet").state_dict()
    masks = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in ("fc1.weight", "fc2.weight"):
            mask = torch.rand(value.shape) > 0.5
            masks[key] = mask
            out[key] = value * mask
            out[mask_key(layout, key)] = mask
        else:
            out[key] = value
    path = tmp_path / f"{layout}{suffix}"
    if suffix == ".safetensors":
        save_file(out, str(path))
    else:
        torch.save(out, path)
    return path, masks


@pytest.mark.parametrize("layout", ["modelopt", "asp", "llm-compressor"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_tool_masks_open_as_pruning_and_round_trip(tmp_path: Path, layout: str, suffix: str) -> None:
    path, masks = tool_checkpoint(tmp_path, layout, suffix)
    doc = Document.open(path)
    assert doc.source.mask_layout == layout
    model = doc.model
    for name, mask in masks.items():
        module = model.get_submodule(name.split(".")[0])
        assert torch.equal(module.weight_mask.bool(), mask)
        assert type(next(iter(module._forward_pre_hooks.values()))).__name__ == "CustomFromMask"
    assert not hasattr(model.fc3, "weight_mask")
    assert doc.report().tensor("fc1.weight").pruned
    assert not doc.history.can_undo  # opening is not a step
    out = doc.export(tmp_path / f"back{suffix}", keep_masks=True, mask_layout=layout)
    written = load_file(str(out)) if suffix == ".safetensors" else torch.load(out, weights_only=True)
    original = load_file(str(path)) if suffix == ".safetensors" else torch.load(path, weights_only=True)
    assert set(written) == set(original)
    if suffix == ".pt":  # a pickle keeps the order it was given: the mask right after its weight
        assert list(written) == list(original)
    for key in original:
        assert torch.equal(written[key], original[key]), key
    again = Document.open(out)
    assert torch.equal(again.model.fc2.weight_mask.bool(), masks["fc2.weight"])


def test_each_layout_can_be_written_from_torch_pruning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    mask = doc.model.fc1.weight_mask.bool()
    for layout, key in LAYOUT_KEYS.items():
        written = load_file(str(doc.export(tmp_path / f"{layout}.safetensors", keep_masks=True,
                                           mask_layout=layout)))
        assert torch.equal(written[key], mask)
        assert torch.equal(written["fc1.weight"], doc.model.fc1.weight)
        assert "fc2._weight_mask" not in written and "fc1.weight_orig" not in written
    recipe = tmp_path / "r.json"
    recipe.write_text('{"steps": [{"op": "prune", "method": "l1_unstructured", "targets": ["fc2.weight"], '
                      '"amount": 0.3}]}')
    result = cli(capsys, "apply", recipe, "--demo", "lenet", "-o", tmp_path / "asp.pt", "--keep-masks",
                 "--mask-layout", "asp")
    assert result.code == 0 and "fc2.__weight_mma_mask" in torch.load(tmp_path / "asp.pt", weights_only=True)
    bad = cli(capsys, "apply", recipe, "--demo", "lenet", "-o", tmp_path / "x.pt", "--mask-layout", "asp")
    assert bad.code == 2 and "--keep-masks" in bad.err


def test_a_buffer_named_mask_that_is_not_a_bool_weight_mask_stays_a_tensor(tmp_path: Path) -> None:
    state = build_demo("lenet").state_dict()
    state["fc1.mask"] = torch.ones(state["fc1.weight"].shape)  # float, not a tool's bool mask
    torch.save(state, tmp_path / "plain.pt")
    doc = Document.open(tmp_path / "plain.pt")
    assert doc.source.mask_layout is None
    assert "fc1.mask" in doc.tensor_names() or "fc1.mask" in doc.source.key_order


def _modelopt_folder(tmp_path: Path, state: object) -> Path:
    folder = tmp_path / "modelopt-folder"
    folder.mkdir()
    torch.manual_seed(0)
    weight = torch.randn(8, 16)
    keep = torch.rand(8, 16) > 0.5
    save_file({"fc.weight": weight * keep, "fc._weight_mask": keep, "fc.bias": torch.zeros(8)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text("{}")
    if isinstance(state, bytes):
        (folder / "modelopt_state.pth").write_bytes(state)
    else:
        torch.save(state, folder / "modelopt_state.pth")
    return folder


def test_modelopt_state_beside_a_folder_is_read_as_data_and_left_out_of_exports(tmp_path: Path) -> None:
    """``modelopt_state.pth`` (ModelOpt's modes) is named on open; the masks come from ``_weight_mask``; a folder
    export (pruned weights only) does not carry the state that would make ModelOpt expect masks."""
    state = {"modelopt_state_dict": [("sparse_magnitude", {"config": {"pattern": "2:4 sparsity"}, "metadata": {}})],
             "modelopt_version": "0.31.0"}
    folder = _modelopt_folder(tmp_path, state)
    doc = Document.open(folder)
    assert doc.source.mask_layout == "modelopt" and doc.state.tensors["fc.weight"].pruned
    notes = [w for w in doc.source.warnings if w.startswith("modelopt_state.pth")]
    assert len(notes) == 1 and "sparse_magnitude" in notes[0] and "0.31.0" in notes[0]
    out = doc.export(tmp_path / "exported")
    assert (out / "config.json").is_file() and not (out / "modelopt_state.pth").exists()
    assert set(load_file(str(out / "model.safetensors"))) == {"fc.weight", "fc.bias"}


def test_a_hostile_modelopt_state_runs_nothing(tmp_path: Path) -> None:
    """A ``modelopt_state.pth`` that would run code when unpickled is not loaded: the folder opens, the note says
    the state was not read, and nothing ran."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return os.system, (f"touch {marker}",)

    import pickle

    folder = _modelopt_folder(tmp_path, pickle.dumps({"modelopt_state_dict": [Payload()]}))
    doc = Document.open(folder)
    assert not marker.exists()
    assert any(w.startswith("modelopt_state.pth: not read") for w in doc.source.warnings)
    assert doc.state.tensors["fc.weight"].pruned
