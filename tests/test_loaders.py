"""Every loader on checkpoints made here: state_dicts, checkpoints, safetensors, HDF5, --arch, trust, sniffing."""

from __future__ import annotations

import json
import os
import random
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import prune

from sparsegui.core.demos import LeNet, TinyTransformer, build_demo, demo_example_input
from sparsegui.core.document import Document
from sparsegui.core.errors import LoadError, TrustRequired
from sparsegui.core.loading import LoadOptions, load_model
from sparsegui.core.loading.rebuild import InferredModule
from tests.helpers import assert_same_tensors, bits

LENET_PARAMS = sum(p.numel() for p in LeNet().parameters())


def lenet_state() -> dict[str, torch.Tensor]:
    return build_demo("lenet").state_dict()




def kinds(model: nn.Module) -> dict[str, str]:
    return {name: module.kind for name, module in model.named_modules() if isinstance(module, InferredModule)}


def effective(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors each module's forward would use (``X`` for a pruned ``X_orig``/``X_mask``), by qualified name."""
    out: dict[str, torch.Tensor] = {}
    for mname, module in model.named_modules():
        pre = f"{mname}." if mname else ""
        for pname, _ in module.named_parameters(recurse=False):
            name = pname.removesuffix("_orig") if hasattr(module, pname.removesuffix("_orig") + "_mask") else pname
            out[pre + name] = getattr(module, name).detach()
    return out


def one_line_load_error(path: Path, options: LoadOptions | None = None) -> str:
    with pytest.raises(LoadError) as info:
        load_model(path, options)
    message = str(info.value)
    assert message and "\n" not in message, message
    return message


# -- plain state_dicts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "legacy"), [("w.pt", False), ("w.pth", False), ("w.bin", False), ("w.pt", True), ("w.pth", True)]
)
def test_plain_state_dict_loads_bit_for_bit(tmp_path: Path, name: str, legacy: bool) -> None:
    """A plain state_dict (zip or legacy pickle, any suffix) rebuilds a tree holding exactly the saved tensors."""
    state = lenet_state()
    path = tmp_path / name
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    loaded = load_model(path)
    assert loaded.source.format == ("legacy torch pickle" if legacy else "torch zip checkpoint")
    assert loaded.source.inferred and not loaded.source.trusted
    assert loaded.source.key == "" and loaded.source.prefix == ""
    assert loaded.source.key_order == list(state)
    assert_same_tensors(loaded.model.state_dict(), state)
    assert isinstance(loaded.model, InferredModule)


def training_checkpoint() -> tuple[dict[str, object], nn.Module, dict[str, torch.Tensor]]:
    model = build_demo("lenet")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    ema = {k: v * 0.5 for k, v in model.state_dict().items()}
    checkpoint = {
        "epoch": 7,
        "optimizer": opt.state_dict(),
        "model_state_dict": model.state_dict(),
        "ema": ema,
        "config": {"lr": 0.1, "name": "lenet"},
    }
    return checkpoint, model, ema


def test_training_checkpoint_picks_model_state_dict(tmp_path: Path) -> None:
    """In a training checkpoint the model's state_dict is chosen over ema/optimizer, and candidates are listed."""
    checkpoint, model, _ = training_checkpoint()
    torch.save(checkpoint, tmp_path / "ck.pt")
    loaded = load_model(tmp_path / "ck.pt")
    assert loaded.source.key == "model_state_dict"
    assert loaded.source.candidates == ["model_state_dict", "ema"]
    assert_same_tensors(loaded.model.state_dict(), model.state_dict())


def test_training_checkpoint_key_option_picks_ema(tmp_path: Path) -> None:
    """LoadOptions(key="ema") opens the EMA weights instead of the default pick."""
    checkpoint, _, ema = training_checkpoint()
    torch.save(checkpoint, tmp_path / "ck.pt")
    loaded = load_model(tmp_path / "ck.pt", LoadOptions(key="ema"))
    assert loaded.source.key == "ema"
    assert_same_tensors(loaded.model.state_dict(), ema)


def test_training_checkpoint_unknown_key_lists_candidates(tmp_path: Path) -> None:
    """An unknown --key raises LoadError naming the key and every candidate."""
    checkpoint, _, _ = training_checkpoint()
    torch.save(checkpoint, tmp_path / "ck.pt")
    message = one_line_load_error(tmp_path / "ck.pt", LoadOptions(key="student"))
    assert "'student'" in message and "'model_state_dict'" in message and "'ema'" in message


def test_ema_and_teacher_copies_rank_below_the_model(tmp_path: Path) -> None:
    """A state_dict under ema/teacher is never the default pick, even under a preferred leaf name like state_dict."""
    state = lenet_state()
    shadow = {k: v * 0.5 for k, v in state.items()}
    torch.save({"ema": {"state_dict": shadow}, "teacher": {"model": shadow}, "net": state}, tmp_path / "ck.pt")
    loaded = load_model(tmp_path / "ck.pt")
    assert loaded.source.key == "net"
    assert loaded.source.candidates == ["ema/state_dict", "teacher/model", "net"]
    assert_same_tensors(loaded.model.state_dict(), state)


def test_nested_checkpoint_key_path(tmp_path: Path) -> None:
    """Nested state_dicts are found and named by their "/"-joined key path."""
    state = lenet_state()
    torch.save({"models": {"student": state, "teacher": {k: v + 1 for k, v in state.items()}}}, tmp_path / "n.pt")
    loaded = load_model(tmp_path / "n.pt")
    assert loaded.source.candidates == ["models/student", "models/teacher"]
    assert loaded.source.key == "models/student"
    assert_same_tensors(loaded.model.state_dict(), state)


def test_checkpoint_without_tensors_is_refused(tmp_path: Path) -> None:
    """A checkpoint holding no state_dict (just numbers and strings) is a LoadError, not an empty model."""
    torch.save({"epoch": 3, "note": "nothing"}, tmp_path / "empty_ck.pt")
    assert "no tensors" in one_line_load_error(tmp_path / "empty_ck.pt")


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "_orig_mod.module."])
def test_wrapper_prefixes_are_stripped(tmp_path: Path, prefix: str) -> None:
    """DataParallel ("module.") and torch.compile ("_orig_mod.") prefixes are stripped and recorded in source.prefix."""
    state = lenet_state()
    torch.save({prefix + k: v for k, v in state.items()}, tmp_path / "wrapped.pt")
    loaded = load_model(tmp_path / "wrapped.pt")
    assert loaded.source.prefix == prefix
    assert loaded.source.key_order == list(state)
    assert [n for n, _ in loaded.model.named_children()] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert_same_tensors(loaded.model.state_dict(), state)


def test_prefix_not_shared_by_every_key_is_kept(tmp_path: Path) -> None:
    """A "module." prefix that only some keys carry is part of the names, not a wrapper."""
    state = {"module.fc.weight": torch.ones(2, 2), "head.weight": torch.ones(1, 2)}
    torch.save(state, tmp_path / "mixed.pt")
    loaded = load_model(tmp_path / "mixed.pt")
    assert loaded.source.prefix == ""
    assert list(loaded.model.state_dict()) == list(state)


# -- safetensors ---------------------------------------------------------------------------------------------------


def test_safetensors_single_file(tmp_path: Path) -> None:
    """A safetensors file written by another tool loads every tensor unchanged, with its metadata."""
    state = lenet_state()
    save_file(state, str(tmp_path / "m.safetensors"), metadata={"origin": "test"})
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.source.format == "safetensors"
    assert loaded.source.metadata["origin"] == "test"
    got = loaded.model.state_dict()
    assert_same_tensors({k: got[k] for k in state}, state)


def write_shards(folder: Path, state: dict[str, torch.Tensor]) -> Path:
    keys = list(state)
    first, second = keys[: len(keys) // 2], keys[len(keys) // 2 :]
    save_file({k: state[k] for k in first}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in second}, str(folder / "model-00002-of-00002.safetensors"))
    weight_map = {k: "model-00001-of-00002.safetensors" for k in first}
    weight_map.update({k: "model-00002-of-00002.safetensors" for k in second})
    index = folder / "model.safetensors.index.json"
    total = sum(t.numel() * t.element_size() for t in state.values())
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return index


def test_sharded_safetensors(tmp_path: Path) -> None:
    """A model.safetensors.index.json joins its shards in weight_map order."""
    state = lenet_state()
    index = write_shards(tmp_path, state)
    loaded = load_model(index)
    assert loaded.source.format == "sharded safetensors index"
    assert loaded.source.key_order == list(state)
    assert_same_tensors(loaded.model.state_dict(), state)


def test_sharded_safetensors_missing_or_escaping_shard(tmp_path: Path) -> None:
    """An index naming a missing shard, or a shard outside its folder, is refused with LoadError."""
    state = lenet_state()
    index = write_shards(tmp_path, state)
    data = json.loads(index.read_text())
    key = next(iter(data["weight_map"]))
    data["weight_map"][key] = "gone.safetensors"
    index.write_text(json.dumps(data))
    assert "missing" in one_line_load_error(index)
    data["weight_map"][key] = "../model-00001-of-00002.safetensors"
    index.write_text(json.dumps(data))
    assert "outside" in one_line_load_error(index)


def test_key_option_refused_for_safetensors(tmp_path: Path) -> None:
    """--key only applies to torch checkpoints; with safetensors it is an error, not silently ignored."""
    save_file(lenet_state(), str(tmp_path / "m.safetensors"))
    assert "--key" in one_line_load_error(tmp_path / "m.safetensors", LoadOptions(key="ema"))


# -- HDF5 ----------------------------------------------------------------------------------------------------------


def test_plain_hdf5_groups_become_modules(tmp_path: Path) -> None:
    """A plain HDF5 file's groups become modules and its datasets tensors (any byte order, ints as buffers)."""
    conv_w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype("<f4")
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        features = h5.create_group("features")
        features.create_dataset("weight", data=conv_w)
        features.create_dataset("bias", data=np.arange(4, dtype=">f4"))
        bn = h5.create_group("bn")
        bn.create_dataset("weight", data=np.ones(4, "f4"))
        bn.create_dataset("bias", data=np.zeros(4, "f4"))
        bn.create_dataset("running_mean", data=np.zeros(4, "f4"))
        bn.create_dataset("running_var", data=np.ones(4, "f4"))
        bn.create_dataset("num_batches_tracked", data=np.int64(5))
        h5.create_group("head").create_dataset("weight", data=np.ones((2, 4), "f8"))
    loaded = load_model(tmp_path / "plain.h5")
    assert loaded.source.format == "HDF5"
    model = loaded.model
    assert kinds(model) == {"": "Container", "bn": "BatchNorm", "features": "Conv2d", "head": "Linear"}
    assert torch.equal(model.features.weight, torch.from_numpy(conv_w))
    assert torch.equal(model.features.bias, torch.arange(4, dtype=torch.float32))
    assert model.head.weight.dtype == torch.float64
    assert set(dict(model.named_buffers())) == {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}
    assert int(model.bn.num_batches_tracked) == 5


def test_sparsegui_hdf5_keeps_key_order(tmp_path: Path) -> None:
    """An HDF5 file SparseGUI wrote loads back with the source's (non-alphabetical) key order and exact tensors."""
    state = lenet_state()
    shuffled = dict(reversed(list(state.items())))
    torch.save(shuffled, tmp_path / "rev.pt")
    Document.open(tmp_path / "rev.pt").export(tmp_path / "out.h5")
    loaded = load_model(tmp_path / "out.h5")
    assert loaded.source.metadata["sparsegui_format"] == "sparsegui-hdf5"
    assert loaded.source.key_order == list(shuffled)
    got = loaded.model.state_dict()
    assert_same_tensors({k: got[k] for k in shuffled}, shuffled)


def test_hdf5_external_storage_refused_and_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset whose data lives in an external local file is refused before that file is read."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype="<f4").tobytes())
    with h5py.File(tmp_path / "ext.h5", "w") as h5:
        group = h5.create_group("fc")
        group.create_dataset("bias", data=np.zeros(2, "f4"))
        group.create_dataset("weight", shape=(2, 3), dtype="<f4", external=[(str(secret), 0, 24)])
    os.utime(secret, (1_000_000, 1_000_000 + 10))  # atime before mtime: any read would move atime (relatime)
    read: list[str] = []
    original = h5py.Dataset.__getitem__

    def spy(self: h5py.Dataset, *args: object) -> object:
        read.append(self.name)
        return original(self, *args)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    message = one_line_load_error(tmp_path / "ext.h5")
    assert "external" in message and "refused" in message
    assert "/fc/weight" not in read
    assert secret.stat().st_atime == 1_000_000


@pytest.mark.parametrize("kind", ["external", "soft"])
def test_hdf5_links_refused(tmp_path: Path, kind: str) -> None:
    """External (and soft) links in an HDF5 file are refused with a clear one-line LoadError."""
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["w"] = np.ones((2, 3), "f4")
    with h5py.File(tmp_path / "link.h5", "w") as h5:
        group = h5.create_group("fc")
        group.create_dataset("bias", data=np.zeros(2, "f4"))
        group["weight"] = h5py.ExternalLink("other.h5", "/w") if kind == "external" else h5py.SoftLink("/fc/bias")
    message = one_line_load_error(tmp_path / "link.h5")
    assert "'fc/weight' is a link" in message and "refused" in message


# -- --arch --------------------------------------------------------------------------------------------------------


def test_arch_gives_real_lenet(tmp_path: Path) -> None:
    """--arch sparsegui.core.demos:lenet gives a real LeNet (no meta tensors) computing like the saved one."""
    original = build_demo("lenet")
    torch.save(original.state_dict(), tmp_path / "w.pt")
    loaded = load_model(tmp_path / "w.pt", LoadOptions(arch="sparsegui.core.demos:lenet"))
    assert type(loaded.model) is LeNet
    assert not loaded.source.inferred and loaded.source.arch == "sparsegui.core.demos:lenet"
    assert not any(t.is_meta for t in [*loaded.model.parameters(), *loaded.model.buffers()])
    x = demo_example_input("lenet")
    with torch.no_grad():
        assert torch.equal(loaded.model(x), original(x))


def test_arch_kwargs(tmp_path: Path) -> None:
    """arch_kwargs reach the factory: a 1-layer TinyTransformer matches a 1-layer checkpoint, the default does not."""
    original = TinyTransformer(layers=1).eval()
    torch.save(original.state_dict(), tmp_path / "t.pt")
    spec = "sparsegui.core.demos:TinyTransformer"
    loaded = load_model(tmp_path / "t.pt", LoadOptions(arch=spec, arch_kwargs={"layers": 1}))
    assert isinstance(loaded.model, TinyTransformer) and len(loaded.model.encoder.layers) == 1
    x = demo_example_input("transformer")
    with torch.no_grad():
        assert torch.equal(loaded.model(x), original(x))
    message = one_line_load_error(tmp_path / "t.pt", LoadOptions(arch=spec))
    assert "encoder.layers.1." in message


def test_arch_path_imports_factory_from_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """arch_path puts a folder on sys.path so a factory defined in a loose .py file can be used."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    module_name = f"user_arch_{tmp_path.name.replace('-', '_')}"
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    (tmp_path / f"{module_name}.py").write_text(
        "from torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, width=3):\n"
        "        super().__init__()\n"
        "        self.body = nn.Linear(4, width)\n"
        "        self.out = nn.Linear(width, 1)\n\n"
        "    def forward(self, x):\n"
        "        return self.out(self.body(x))\n\n"
        "def make(width=3):\n"
        "    return Net(width)\n"
    )
    state = {"body.weight": torch.randn(5, 4), "body.bias": torch.randn(5), "out.weight": torch.randn(1, 5),
             "out.bias": torch.randn(1)}
    torch.save(state, tmp_path / "w.pt")
    options = LoadOptions(arch=f"{module_name}:make", arch_kwargs={"width": 5}, arch_path=str(tmp_path))
    loaded = load_model(tmp_path / "w.pt", options)
    assert type(loaded.model).__name__ == "Net"
    assert_same_tensors(loaded.model.state_dict(), state)
    monkeypatch.delitem(sys.modules, module_name, raising=False)


def test_arch_missing_keys_named(tmp_path: Path) -> None:
    """A checkpoint lacking keys the architecture needs raises LoadError naming them."""
    state = lenet_state()
    del state["fc3.bias"], state["conv2.weight"]
    torch.save(state, tmp_path / "w.pt")
    message = one_line_load_error(tmp_path / "w.pt", LoadOptions(arch="sparsegui.core.demos:lenet"))
    assert "fc3.bias" in message and "conv2.weight" in message and "2 key(s)" in message


def test_arch_unexpected_keys_reported(tmp_path: Path) -> None:
    """Keys the architecture does not use load anyway and are listed in source.unexpected_keys with a warning."""
    state = lenet_state()
    state["aux.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "w.pt")
    loaded = load_model(tmp_path / "w.pt", LoadOptions(arch="sparsegui.core.demos:lenet"))
    assert loaded.source.unexpected_keys == ["aux.weight"]
    assert loaded.source.missing_keys == []
    assert loaded.source.warnings


def test_arch_bad_spec(tmp_path: Path) -> None:
    """An --arch that cannot be imported, or returns no module, is a one-line LoadError."""
    torch.save(lenet_state(), tmp_path / "w.pt")
    assert "cannot import" in one_line_load_error(tmp_path / "w.pt", LoadOptions(arch="no_such_pkg_xyz:f"))
    assert "package.module:factory" in one_line_load_error(tmp_path / "w.pt", LoadOptions(arch="lenet"))
    assert "not a torch.nn.Module" in one_line_load_error(
        tmp_path / "w.pt", LoadOptions(arch="sparsegui.core.demos:demo_example_input", arch_kwargs={"name": "lenet"})
    )


@pytest.mark.parametrize("arch", [None, "sparsegui.core.demos:lenet"])
def test_pruned_state_dict_comes_back_pruned(tmp_path: Path, arch: str | None) -> None:
    """A state_dict saved while pruned (X_orig/X_mask) reopens with CustomFromMask hooks and the same effective
    weights, with or without --arch."""
    pruned = build_demo("lenet")
    prune.l1_unstructured(pruned.conv1, "weight", 0.5)
    prune.random_unstructured(pruned.fc1, "weight", 0.3)
    prune.l1_unstructured(pruned.fc1, "weight", 0.2)
    torch.save(pruned.state_dict(), tmp_path / "pruned.pt")
    loaded = load_model(tmp_path / "pruned.pt", LoadOptions(arch=arch))
    model = loaded.model
    for name in ("conv1", "fc1"):
        hooks = [h for h in getattr(model, name)._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
        assert [type(h) for h in hooks] == [prune.CustomFromMask]
        assert torch.equal(getattr(model, name).weight_mask, getattr(pruned, name).weight_mask)
    assert not hasattr(model.fc2, "weight_mask")
    want = effective(pruned)
    got = effective(model)
    assert set(got) == set(want)
    for key in want:
        assert torch.equal(bits(got[key]), bits(want[key])), key
    assert loaded.source.key_order[:2] == ["conv1.bias", "conv1.weight"]
    if arch:
        x = demo_example_input("lenet")
        with torch.no_grad():
            assert torch.equal(model(x), pruned(x))


# -- rebuilt trees -------------------------------------------------------------------------------------------------


def test_rebuilt_kinds_from_handmade_state_dict(tmp_path: Path) -> None:
    """Kinds are guessed from tensors: 4-D weight + bias → Conv2d, 2-D → Linear, running stats → BatchNorm,
    in_proj_weight → MultiheadAttention, an embedding-named bias-free 2-D weight → Embedding."""
    state = {
        "features.0.weight": torch.randn(8, 3, 3, 3),
        "features.0.bias": torch.randn(8),
        "features.1.weight": torch.ones(8),
        "features.1.bias": torch.zeros(8),
        "features.1.running_mean": torch.zeros(8),
        "features.1.running_var": torch.ones(8),
        "features.1.num_batches_tracked": torch.tensor(0),
        "wte.weight": torch.randn(50, 8),
        "attn.in_proj_weight": torch.randn(24, 8),
        "attn.in_proj_bias": torch.randn(24),
        "attn.out_proj.weight": torch.randn(8, 8),
        "attn.out_proj.bias": torch.randn(8),
        "ln_f.weight": torch.ones(8),
        "ln_f.bias": torch.zeros(8),
        "classifier.weight": torch.randn(10, 8),
        "classifier.bias": torch.randn(10),
        "conv1d.weight": torch.randn(4, 2, 3),
    }
    torch.save(state, tmp_path / "h.pt")
    model = load_model(tmp_path / "h.pt").model
    assert kinds(model) == {
        "": "Container",
        "features": "Container",
        "features.0": "Conv2d",
        "features.1": "BatchNorm",
        "wte": "Embedding",
        "attn": "MultiheadAttention",
        "attn.out_proj": "Linear",
        "ln_f": "LayerNorm",
        "classifier": "Linear",
        "conv1d": "Conv1d",
    }


def test_rebuilt_demo_kinds(tmp_path: Path) -> None:
    """The resnet and transformer demos, saved as bare state_dicts, rebuild with the right kinds."""
    torch.save(build_demo("resnet").state_dict(), tmp_path / "r.pt")
    resnet = kinds(load_model(tmp_path / "r.pt").model)
    assert resnet["conv1"] == "Conv2d" and resnet["bn1"] == "BatchNorm" and resnet["fc"] == "Linear"
    assert resnet["layer2.0.downsample.0"] == "Conv2d" and resnet["layer2.0.downsample.1"] == "BatchNorm"
    assert resnet["layer1.0"] == "Container"
    torch.save(build_demo("transformer").state_dict(), tmp_path / "t.pt")
    trans = kinds(load_model(tmp_path / "t.pt").model)
    assert trans["tok_embed"] == "Embedding" and trans["pos_embed"] == "Embedding"
    assert trans["encoder.layers.0.self_attn"] == "MultiheadAttention"
    assert trans["encoder.layers.1.linear1"] == "Linear" and trans["norm"] == "LayerNorm"


def test_rebuilt_buffers_and_parameters(tmp_path: Path) -> None:
    """Running statistics and integer tensors become buffers; float weights become parameters."""
    source = build_demo("resnet")
    torch.save(source.state_dict(), tmp_path / "r.pt")
    model = load_model(tmp_path / "r.pt").model
    assert set(dict(model.named_parameters())) == set(dict(source.named_parameters()))
    assert set(dict(model.named_buffers())) == set(dict(source.named_buffers()))
    assert list(model.bn1._buffers) == ["running_mean", "running_var", "num_batches_tracked"]
    assert list(model.bn1._parameters) == ["weight", "bias"]


def test_torch_prune_works_on_rebuilt_modules(tmp_path: Path) -> None:
    """torch.nn.utils.prune (prune, prune again, remove) works unchanged on rebuilt modules."""
    torch.save(lenet_state(), tmp_path / "w.pt")
    model = load_model(tmp_path / "w.pt").model
    original = model.conv2.weight.detach().clone()
    prune.l1_unstructured(model.conv2, "weight", amount=0.5)
    assert "weight_orig" in dict(model.conv2.named_parameters())
    assert "weight_mask" in dict(model.conv2.named_buffers())
    assert int((model.conv2.weight == 0).sum()) == original.numel() // 2
    prune.ln_structured(model.conv2, "weight", amount=0.25, n=2, dim=0)
    assert isinstance(next(iter(model.conv2._forward_pre_hooks.values())), prune.PruningContainer)
    expected = original * model.conv2.weight_mask
    prune.remove(model.conv2, "weight")
    assert torch.equal(model.conv2.weight, expected)
    assert "weight_mask" not in dict(model.conv2.named_buffers())


def test_rebuilt_model_has_no_forward(tmp_path: Path) -> None:
    """A rebuilt tree refuses to run (its code is unknown) and says to use --arch."""
    torch.save(lenet_state(), tmp_path / "w.pt")
    model = load_model(tmp_path / "w.pt").model
    with pytest.raises(NotImplementedError, match="--arch"):
        model(demo_example_input("lenet"))


# -- trust ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_full_module_pickle_needs_trust(tmp_path: Path, legacy: bool) -> None:
    """torch.save(module) raises TrustRequired naming the classes; with trust=True it opens as the real module."""
    original = build_demo("lenet")
    torch.save(original, tmp_path / "full.pt", _use_new_zipfile_serialization=not legacy)
    with pytest.raises(TrustRequired) as info:
        load_model(tmp_path / "full.pt")
    assert "sparsegui.core.demos.LeNet" in str(info.value) and "--trust" in str(info.value)
    assert "\n" not in str(info.value)
    assert "sparsegui.core.demos.LeNet" in info.value.wanted_imports
    assert "torch.nn.modules.conv.Conv2d" in info.value.wanted_imports
    loaded = load_model(tmp_path / "full.pt", LoadOptions(trust=True))
    assert type(loaded.model) is LeNet and loaded.source.trusted
    assert_same_tensors(loaded.model.state_dict(), original.state_dict())


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_needs_trust(tmp_path: Path) -> None:
    """A TorchScript lenet is refused without trust (naming its classes) and opens with it, same parameters."""
    original = build_demo("lenet")
    torch.jit.script(original).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(TrustRequired) as info:
        load_model(tmp_path / "scripted.pt")
    assert "TorchScript" in str(info.value) and "LeNet" in str(info.value)
    assert any(name.endswith("LeNet") for name in info.value.wanted_imports)
    loaded = load_model(tmp_path / "scripted.pt", LoadOptions(trust=True))
    assert loaded.source.format == "TorchScript archive"
    assert sum(p.numel() for p in loaded.model.parameters()) == LENET_PARAMS
    assert kinds(loaded.model)[""] == "LeNet" and kinds(loaded.model)["conv1"] == "Conv2d"
    assert_same_tensors(loaded.model.state_dict(), original.state_dict())


def test_exported_program_needs_trust(tmp_path: Path) -> None:
    """A torch.export'ed lenet (.pt2) is refused without trust and opens with it, same parameters."""
    original = build_demo("lenet")
    program = torch.export.export(original, (demo_example_input("lenet"),))
    torch.export.save(program, str(tmp_path / "lenet.pt2"))
    with pytest.raises(TrustRequired) as info:
        load_model(tmp_path / "lenet.pt2")
    assert "torch.export" in str(info.value) and "--trust" in str(info.value)
    loaded = load_model(tmp_path / "lenet.pt2", LoadOptions(trust=True))
    assert loaded.source.format == "torch.export program (.pt2)"
    assert sum(p.numel() for p in loaded.model.parameters()) == LENET_PARAMS
    got = loaded.model.state_dict()
    assert_same_tensors({k: got[k] for k in original.state_dict()}, original.state_dict())


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _OpenPayload(_Payload):
    def __reduce__(self) -> tuple[object, tuple[str, str]]:  # type: ignore[override]
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_Payload, _OpenPayload])
@pytest.mark.parametrize("legacy", [False, True])
def test_reduce_payload_never_runs(tmp_path: Path, payload: type[_Payload], legacy: bool) -> None:
    """A pickle whose __reduce__ would create a file is refused (TrustRequired) and never runs."""
    marker = tmp_path / "marker"
    torch.save({"fc.weight": torch.zeros(2, 2), "x": payload(marker)}, tmp_path / "evil.pt",
               _use_new_zipfile_serialization=not legacy)
    for _ in range(2):
        with pytest.raises(TrustRequired) as info:
            load_model(tmp_path / "evil.pt")
        assert info.value.wanted_imports and "\n" not in str(info.value)
    with pytest.raises(LoadError):
        Document.open(tmp_path / "evil.pt")
    assert not marker.exists()


# -- sniffing and damaged files ------------------------------------------------------------------------------------


def test_safetensors_named_pt_loads_as_safetensors(tmp_path: Path) -> None:
    """The format comes from the content: a safetensors file named .pt loads as safetensors."""
    state = lenet_state()
    save_file(state, str(tmp_path / "weights.pt"))
    loaded = load_model(tmp_path / "weights.pt")
    assert loaded.source.format == "safetensors"
    got = loaded.model.state_dict()
    assert_same_tensors({k: got[k] for k in state}, state)


def test_zip_checkpoint_named_h5_loads_as_torch(tmp_path: Path) -> None:
    """A torch zip checkpoint named .h5 still loads as a torch checkpoint."""
    torch.save(lenet_state(), tmp_path / "weights.h5")
    assert load_model(tmp_path / "weights.h5").source.format == "torch zip checkpoint"


BAD_FILES: dict[str, tuple[str, bytes]] = {
    "png": ("image.pt", b"\x89PNG\r\n\x1a\n" + bytes(200)),
    "empty": ("zero.pt", b""),
    "random": ("random.pt", random.Random(0).randbytes(4096)),
    "json": ("config.json", json.dumps({"hidden_size": 64, "layers": 2}).encode()),
    "json_list": ("list.json", b"[1, 2, 3]"),
    "bad_json": ("broken.json", b"{ not json"),
    "recipe": ("steps.pt", json.dumps({"steps": []}).encode()),
    "plain_zip": ("plain.pt", b""),
    "npy": ("array.pt", b"\x93NUMPY\x01\x00" + bytes(100)),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_non_checkpoints_raise_one_line_load_error(tmp_path: Path, case: str) -> None:
    """Files that are not checkpoints raise LoadError (never another type) with a one-line message."""
    name, data = BAD_FILES[case]
    path = tmp_path / name
    if case == "plain_zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
    else:
        path.write_bytes(data)
    message = one_line_load_error(path)
    assert name in message
    if case == "png":
        assert "PNG" in message
    if case == "empty":
        assert "empty" in message
    if case == "recipe":
        assert "recipe" in message


def test_missing_path_and_folder(tmp_path: Path) -> None:
    """A missing path or a folder is a LoadError, not an OSError."""
    one_line_load_error(tmp_path / "nope.pt")
    one_line_load_error(tmp_path)


def _fixture_bytes(tmp_path: Path, kind: str) -> bytes:
    state = lenet_state()
    path = tmp_path / f"source.{kind}"
    if kind == "pt":
        torch.save(state, path)
    elif kind == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    elif kind == "safetensors":
        save_file(state, str(path))
    else:
        Document.demo("lenet").export(path)
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["pt", "legacy", "safetensors", "h5"])
def test_truncated_files_raise_load_error(tmp_path: Path, kind: str) -> None:
    """A checkpoint cut at any point raises LoadError with a one-line message (never another exception)."""
    data = _fixture_bytes(tmp_path, kind)
    cuts = sorted({1, 8, 9, 100, 1024, len(data) - 1, *range(7, len(data), max(1, len(data) // 40))})
    for cut in cuts:
        path = tmp_path / f"cut_{cut}.{kind}"
        path.write_bytes(data[:cut])
        try:
            load_model(path)
        except LoadError as exc:
            assert "\n" not in str(exc), (cut, str(exc))
        else:
            pytest.fail(f"{kind} truncated at {cut}/{len(data)} bytes loaded without error")
        path.unlink()


def test_zip_with_short_tensor_record_is_refused(tmp_path: Path) -> None:
    """A zip checkpoint whose tensor record is shorter than its tensor is refused instead of reading the bytes that
    follow it in the file (memory-mapped loading does not check record sizes by itself)."""
    torch.save(lenet_state(), tmp_path / "good.pt")
    with zipfile.ZipFile(tmp_path / "good.pt") as src, zipfile.ZipFile(tmp_path / "short.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[:10] if info.filename.endswith("/data/0") else data)
    message = one_line_load_error(tmp_path / "short.pt")
    assert "data/0" in message
    assert load_model(tmp_path / "good.pt").model.conv1.weight.shape == (6, 1, 3, 3)


def test_zip_with_missing_tensor_record_is_refused(tmp_path: Path) -> None:
    """A zip checkpoint missing one tensor record raises a one-line LoadError."""
    torch.save(lenet_state(), tmp_path / "good.pt")
    with zipfile.ZipFile(tmp_path / "good.pt") as src, zipfile.ZipFile(tmp_path / "gap.pt", "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("/data/3"):
                dst.writestr(info, src.read(info))
    one_line_load_error(tmp_path / "gap.pt")
