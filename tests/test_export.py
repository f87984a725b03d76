"""Exports round-trip exactly (clean, with masks, masks alone) in every format, and never damage an existing file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from sparsegui.core.demos import LeNet, TinyResNet, TinyTransformer, build_demo, demo_example_input
from sparsegui.core.document import Document
from sparsegui.core.errors import ExportError
from sparsegui.core.export import LazyTensors, safetensors_out, torch_out, writers
from sparsegui.core.h5format import read_tensor
from sparsegui.core.loading import LoadOptions, load_model
from tests.helpers import assert_same_tensors

EXTS = ["pt", "safetensors", "h5"]
ARCHS: dict[str, type[nn.Module]] = {"lenet": LeNet, "resnet": TinyResNet, "transformer": TinyTransformer}


def prune_demo(doc: Document, name: str) -> None:
    """A mix of methods, including a tensor pruned twice (a PruningContainer)."""
    if name == "lenet":
        doc.prune("l1_unstructured", ["conv1.weight"], amount=0.5)
        doc.prune("random_unstructured", ["fc1.weight"], amount=0.3, seed=1)
        doc.prune("l1_unstructured", ["fc1.weight"], amount=0.2)
        doc.prune("ln_structured", ["conv2.weight"], amount=0.25, n=2, dim=0)
    elif name == "resnet":
        doc.prune("l1_unstructured", ["*.weight"], types=["Conv2d"], amount=0.4)
        doc.prune("random_unstructured", ["fc.weight"], amount=0.5, seed=3)
        doc.prune("ln_structured", ["layer1.0.conv1.weight"], amount=0.25, n=1, dim=0)
    else:
        doc.prune("l1_unstructured", ["encoder.layers.*.linear1.weight", "head.weight"], amount=0.5)
        doc.prune("random_unstructured", ["encoder.layers.0.self_attn.in_proj_weight"], amount=0.3, seed=2)
        doc.prune("l1_unstructured", ["tok_embed.weight"], amount=0.2)


def pruned_doc(name: str = "lenet") -> Document:
    doc = Document.demo(name)
    prune_demo(doc, name)
    return doc


def pruned_names(model: nn.Module) -> list[str]:
    """Qualified names of pruned tensors (those with an X_mask buffer next to an X_orig parameter)."""
    return [n.removesuffix("_mask") for n, _ in model.named_buffers() if n.endswith("_mask")
            and n.removesuffix("_mask") + "_orig" in dict(model.named_parameters())]


def removed_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What torch's own prune.remove would leave (each pruned X as the effective tensor torch's hook computed, the
    rest as is): the expected clean export (keys unordered)."""
    state = model.state_dict()
    for name in pruned_names(model):
        module_name, _, tensor = name.rpartition(".")
        del state[name + "_orig"], state[name + "_mask"]
        state[name] = getattr(model.get_submodule(module_name), tensor).detach()
    return state


def read_raw(path: Path) -> dict[str, torch.Tensor]:
    """A written file's tensors in the order it records, read without SparseGUI's loaders."""
    if path.suffix == ".pt":
        return dict(torch.load(path, weights_only=True))
    if path.suffix == ".safetensors":
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            order = json.loads(handle.metadata()["sparsegui_key_order"])
        assert set(order) == set(tensors)
        return {k: tensors[k] for k in order}
    with h5py.File(path) as h5:
        return {k: read_tensor(h5[k.replace(".", "/")]) for k in json.loads(h5.attrs["key_order"])}


def with_masks_order(source_order: list[str], pruned: list[str]) -> list[str]:
    out: list[str] = []
    for key in source_order:
        out += [key + "_orig", key + "_mask"] if key in pruned else [key]
    return out


# -- clean exports -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("name", list(ARCHS))
def test_clean_export_round_trip(tmp_path: Path, name: str, ext: str) -> None:
    """A clean export holds exactly what prune.remove would leave, in the source's key order, and reads back so."""
    doc = pruned_doc(name)
    path = tmp_path / f"out.{ext}"
    assert doc.export(path) == path
    source_order = list(build_demo(name).state_dict())
    expected = removed_state(doc.model)
    raw = read_raw(path)
    assert list(raw) == source_order
    assert_same_tensors(raw, expected, ordered=False)
    loaded = load_model(path)
    assert loaded.source.key_order == source_order
    assert_same_tensors(loaded.model.state_dict(), expected, ordered=False)
    assert not any(k.endswith(("_orig", "_mask")) for k in raw)


@pytest.mark.parametrize("name", list(ARCHS))
def test_clean_pt_loads_strict_into_original_architecture(tmp_path: Path, name: str) -> None:
    """The clean .pt loads with strict=True into the demo's own class and computes what the pruned model does."""
    doc = pruned_doc(name)
    doc.export(tmp_path / "clean.pt")
    model = ARCHS[name]()
    result = model.load_state_dict(torch.load(tmp_path / "clean.pt", weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    x = demo_example_input(name)
    with torch.no_grad():
        assert torch.equal(model(x), doc.model(x))
        assert not torch.equal(model(x), build_demo(name)(x))


@pytest.mark.parametrize("ext", ["safetensors", "h5"])
def test_clean_export_reopens_into_architecture(tmp_path: Path, ext: str) -> None:
    """Clean safetensors/HDF5 exports reopen with --arch into a model computing what the pruned model does."""
    doc = pruned_doc("resnet")
    doc.export(tmp_path / f"clean.{ext}")
    loaded = load_model(tmp_path / f"clean.{ext}", LoadOptions(arch="sparsegui.core.demos:resnet"))
    x = demo_example_input("resnet")
    with torch.no_grad():
        assert torch.equal(loaded.model(x), doc.model(x))


@pytest.mark.parametrize("ext", EXTS)
def test_export_keeps_foreign_key_order(tmp_path: Path, ext: str) -> None:
    """A source whose keys are in an unusual order is exported in that same order."""
    state = build_demo("lenet").state_dict()
    order = list(reversed(state))
    order.insert(0, order.pop(5))
    torch.save({k: state[k] for k in order}, tmp_path / "odd.pt")
    doc = Document.open(tmp_path / "odd.pt")
    doc.prune("l1_unstructured", ["fc1.weight", "conv1.weight"], amount=0.5)
    doc.export(tmp_path / f"out.{ext}")
    assert list(read_raw(tmp_path / f"out.{ext}")) == order
    assert load_model(tmp_path / f"out.{ext}").source.key_order == order


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.module."])
def test_export_puts_wrapper_prefix_back(tmp_path: Path, ext: str, prefix: str) -> None:
    """A "module."/"_orig_mod." source is exported under its own prefixed key names, clean and with masks."""
    state = build_demo("lenet").state_dict()
    torch.save({prefix + k: v for k, v in state.items()}, tmp_path / "dp.pt")
    doc = Document.open(tmp_path / "dp.pt")
    doc.prune("l1_unstructured", ["conv2.weight"], amount=0.5)
    doc.export(tmp_path / f"clean.{ext}")
    assert list(read_raw(tmp_path / f"clean.{ext}")) == [prefix + k for k in state]
    reopened = load_model(tmp_path / f"clean.{ext}")
    assert reopened.source.prefix == prefix and reopened.source.key_order == list(state)
    doc.export(tmp_path / f"masked.{ext}", keep_masks=True)
    keys = list(read_raw(tmp_path / f"masked.{ext}"))
    assert keys == [prefix + k for k in with_masks_order(list(state), ["conv2.weight"])]


def test_export_of_training_checkpoint_holds_only_chosen_state_dict(tmp_path: Path) -> None:
    """Exporting a model opened from a training checkpoint writes only the chosen state_dict's keys."""
    model = build_demo("lenet")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    ema = {k: v * 0.5 for k, v in model.state_dict().items()}
    torch.save({"epoch": 2, "optimizer": opt.state_dict(), "model_state_dict": model.state_dict(), "ema": ema},
               tmp_path / "ck.pt")
    doc = Document.open(tmp_path / "ck.pt")
    doc.export(tmp_path / "model.pt")
    assert_same_tensors(torch.load(tmp_path / "model.pt", weights_only=True), model.state_dict(), ordered=False)
    assert list(torch.load(tmp_path / "model.pt", weights_only=True)) == list(model.state_dict())
    ema_doc = Document.open(tmp_path / "ck.pt", LoadOptions(key="ema"))
    ema_doc.export(tmp_path / "ema.pt")
    assert_same_tensors(torch.load(tmp_path / "ema.pt", weights_only=True), ema, ordered=False)


def test_export_marks_history_clean(tmp_path: Path) -> None:
    """A successful export marks the document unmodified."""
    doc = pruned_doc()
    assert doc.modified
    doc.export(tmp_path / "out.pt")
    assert not doc.modified


# -- keeping masks -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", EXTS)
def test_keep_masks_export_matches_pruned_state_dict(tmp_path: Path, ext: str) -> None:
    """keep_masks=True writes X_orig/X_mask like the pruned model's own state_dict, X_orig/X_mask in X's place."""
    doc = pruned_doc()
    doc.export(tmp_path / f"masked.{ext}", keep_masks=True)
    own = doc.model.state_dict()
    source_order = list(build_demo("lenet").state_dict())
    raw = read_raw(tmp_path / f"masked.{ext}")
    assert list(raw) == with_masks_order(source_order, pruned_names(doc.model))
    assert_same_tensors(raw, own, ordered=False)
    if ext == "h5":
        with h5py.File(tmp_path / "masked.h5") as h5:
            assert h5.attrs["contents"] == "state_dict+masks"
            assert h5["conv1/weight_mask"].attrs["encoding"] == "bits"
            assert h5["conv1/weight_orig"].attrs["encoding"] == "raw"


@pytest.mark.parametrize("ext", EXTS)
def test_keep_masks_export_reopens_pruned(tmp_path: Path, ext: str) -> None:
    """Reopening a keep_masks export gives back a pruned model: same masks, same X_orig, same effective tensors."""
    doc = pruned_doc()
    doc.export(tmp_path / f"masked.{ext}", keep_masks=True)
    reopened = Document.open(tmp_path / f"masked.{ext}", LoadOptions(arch="sparsegui.core.demos:lenet"))
    assert sorted(pruned_names(reopened.model)) == sorted(pruned_names(doc.model))
    assert_same_tensors(reopened.model.state_dict(), doc.model.state_dict(), ordered=False)
    x = demo_example_input("lenet")
    with torch.no_grad():
        assert torch.equal(reopened.model(x), doc.model(x))
    rebuilt = load_model(tmp_path / f"masked.{ext}").model
    assert_same_tensors(rebuilt.state_dict(), doc.model.state_dict(), ordered=False)
    assert_same_tensors(removed_state(rebuilt), removed_state(doc.model), ordered=False)


# -- masks alone ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", EXTS)
def test_export_masks_and_reapply(tmp_path: Path, ext: str) -> None:
    """export_masks writes one bool mask per pruned tensor; custom_from_mask with that file reproduces the masks."""
    doc = pruned_doc()
    path = tmp_path / f"masks.{ext}"
    doc.export_masks(path)
    names = pruned_names(doc.model)
    if ext == "pt":
        masks = torch.load(path, weights_only=True)
    elif ext == "safetensors":
        masks = load_file(str(path))
    else:
        masks = load_model(path).model.state_dict()
    assert set(masks) == set(names)
    for name in names:
        assert masks[name].dtype == torch.bool
        assert torch.equal(masks[name], doc.model.get_buffer(name + "_mask").ne(0))
    fresh = Document.demo("lenet")
    fresh.prune("custom_from_mask", names, mask=path)
    for name in names:
        assert torch.equal(fresh.model.get_buffer(name + "_mask"), doc.model.get_buffer(name + "_mask"))
    x = demo_example_input("lenet")
    with torch.no_grad():
        assert torch.equal(fresh.model(x), doc.model(x))


def test_hdf5_masks_are_bit_packed(tmp_path: Path) -> None:
    """HDF5 masks take about one bit per weight on disk: far fewer bytes than elements."""
    doc = pruned_doc()
    doc.export_masks(tmp_path / "masks.h5")
    with h5py.File(tmp_path / "masks.h5") as h5:
        assert h5.attrs["contents"] == "masks"
        dset = h5["fc1/weight"]
        numel = 120 * 400
        assert dset.attrs["encoding"] == "bits" and json.loads(dset.attrs["shape"]) == [120, 400]
        assert dset.dtype == "uint8" and dset.shape == (numel // 8,)
        assert dset.id.get_storage_size() < numel / 6
        assert h5["conv1/weight"].id.get_storage_size() < 6 * 9


# -- HDF5 attributes -----------------------------------------------------------------------------------------------


def test_hdf5_export_carries_sparsity_attributes(tmp_path: Path) -> None:
    """Each HDF5 dataset carries zeros and sparsity; pruned ones the JSON pruning history; the root the layout."""
    doc = pruned_doc()
    doc.export(tmp_path / "out.h5")
    expected = removed_state(doc.model)
    pruned = pruned_names(doc.model)
    with h5py.File(tmp_path / "out.h5") as h5:
        assert h5.attrs["sparsegui_format"] == "sparsegui-hdf5"
        assert h5.attrs["contents"] == "state_dict"
        assert json.loads(h5.attrs["key_order"]) == list(build_demo("lenet").state_dict())
        for key, tensor in expected.items():
            dset = h5[key.replace(".", "/")]
            zeros = int((tensor == 0).sum())
            assert int(dset.attrs["zeros"]) == zeros, key
            assert float(dset.attrs["sparsity"]) == pytest.approx(zeros / tensor.numel()), key
            assert ("history" in dset.attrs) == (key in pruned), key
        assert json.loads(h5["conv1/weight"].attrs["history"]) == [{"class": "L1Unstructured", "amount": 0.5}]
        fc1 = [step["class"] for step in json.loads(h5["fc1/weight"].attrs["history"])]
        assert fc1 == ["RandomUnstructured", "L1Unstructured"]
        assert float(h5["conv1/weight"].attrs["sparsity"]) == 0.5


# -- dtypes --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dtypes_survive_every_format(tmp_path: Path, dtype: torch.dtype, ext: str) -> None:
    """float16 and bfloat16 tensors keep their dtype and bytes through clean and keep_masks exports."""
    torch.save(build_demo("lenet").to(dtype).state_dict(), tmp_path / "half.pt")
    doc = Document.open(tmp_path / "half.pt")
    doc.prune("l1_unstructured", ["conv1.weight", "fc1.weight"], amount=0.5)
    doc.export(tmp_path / f"clean.{ext}")
    clean = load_model(tmp_path / f"clean.{ext}").model.state_dict()
    assert {t.dtype for t in clean.values()} == {dtype}
    assert_same_tensors(clean, removed_state(doc.model), ordered=False)
    doc.export(tmp_path / f"masked.{ext}", keep_masks=True)
    masked = load_model(tmp_path / f"masked.{ext}").model
    assert_same_tensors(masked.state_dict(), doc.model.state_dict(), ordered=False)
    assert masked.conv1.weight.dtype == dtype


# -- atomic writes -------------------------------------------------------------------------------------------------


def _failing_record(exc: BaseException, real: Callable[..., None]) -> Callable[..., None]:
    """torch's zip writer (as the .pt export drives it), failing at its fifth record: midway through the file."""
    calls = {"n": 0}

    def write_record(self: object, name: str, data: object, size: int) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise exc
        real(self, name, data, size)

    return write_record


def _failing_write_tensor(exc: BaseException, real: Callable[..., object]) -> Callable[..., object]:
    """``real`` (a per-tensor writer), failing at the third tensor: midway through the file."""
    calls = {"n": 0}

    def write_tensor(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise exc
        return real(*args, **kwargs)

    return write_tensor


def break_writer(monkeypatch: pytest.MonkeyPatch, ext: str, exc: BaseException) -> None:
    if ext == "pt":
        monkeypatch.setattr(torch_out._Writer, "write_record", _failing_record(exc, torch_out._Writer.write_record))
    elif ext == "safetensors":
        monkeypatch.setattr(safetensors_out, "write_tensor_bytes",
                            _failing_write_tensor(exc, safetensors_out.write_tensor_bytes))
    else:
        monkeypatch.setattr(writers, "write_tensor", _failing_write_tensor(exc, writers.write_tensor))


@pytest.mark.parametrize("ext", EXTS)
def test_failed_export_leaves_old_file_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str) -> None:
    """A writer failing midway gives ExportError; the existing target is byte-identical and no temp file remains."""
    target = tmp_path / f"model.{ext}"
    Document.demo("lenet").export(target)
    before = target.read_bytes()
    doc = pruned_doc()
    break_writer(monkeypatch, ext, OSError("No space left on device"))
    with pytest.raises(ExportError) as info:
        doc.export(target)
    assert "No space left on device" in str(info.value) and "\n" not in str(info.value)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == [target.name]
    assert doc.modified


@pytest.mark.parametrize("ext", EXTS)
def test_interrupted_export_leaves_old_file_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str
) -> None:
    """A KeyboardInterrupt midway propagates, and still leaves the old target intact and no temp file."""
    target = tmp_path / f"model.{ext}"
    Document.demo("lenet").export(target)
    before = target.read_bytes()
    break_writer(monkeypatch, ext, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        pruned_doc().export(target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == [target.name]


def test_failed_mask_export_leaves_old_file_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """export_masks is atomic too."""
    target = tmp_path / "masks.safetensors"
    target.write_bytes(b"old masks")
    break_writer(monkeypatch, "safetensors", RuntimeError("boom"))
    with pytest.raises(ExportError):
        pruned_doc().export_masks(target)
    assert target.read_bytes() == b"old masks"
    assert os.listdir(tmp_path) == [target.name]


def test_export_that_fails_verification_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A written file that does not read back with every tensor is refused and the old target kept."""
    target = tmp_path / "model.pt"
    target.write_bytes(b"previous")

    def lossy_save(target: str, tensors: LazyTensors) -> None:
        torch.save({k: tensors[k] for k in tensors if k != "fc3.bias"}, target)

    monkeypatch.setattr(torch_out, "save", lossy_save)
    with pytest.raises(ExportError, match="expected tensors"):
        pruned_doc().export(target)
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == [target.name]


def test_export_replaces_target_keeping_its_permissions(tmp_path: Path) -> None:
    """Overwriting an existing file keeps its permission bits; the new content is the new export."""
    target = tmp_path / "model.pt"
    Document.demo("lenet").export(target)
    os.chmod(target, 0o640)
    doc = pruned_doc()
    doc.export(target)
    assert target.stat().st_mode & 0o777 == 0o640
    assert_same_tensors(torch.load(target, weights_only=True), removed_state(doc.model), ordered=False)
    assert os.listdir(tmp_path) == [target.name]


@pytest.mark.parametrize("name", ["model.onnx", "model.txt", "model.pt.gz"])
def test_unknown_extension_is_refused(tmp_path: Path, name: str) -> None:
    """An unknown extension raises ExportError and writes nothing; the document stays modified."""
    doc = pruned_doc()
    with pytest.raises(ExportError, match="unknown export format"):
        doc.export(tmp_path / name)
    with pytest.raises(ExportError):
        doc.export_masks(tmp_path / name)
    assert os.listdir(tmp_path) == []
    assert doc.modified


@pytest.mark.parametrize("ext", EXTS)
def test_missing_folder_is_refused(tmp_path: Path, ext: str) -> None:
    """A target in a folder that does not exist raises ExportError; no folder is created."""
    doc = pruned_doc()
    with pytest.raises(ExportError, match="does not exist"):
        doc.export(tmp_path / "missing" / f"model.{ext}")
    with pytest.raises(ExportError, match="does not exist"):
        doc.export_masks(tmp_path / "missing" / f"masks.{ext}")
    assert not (tmp_path / "missing").exists()
    assert doc.modified
