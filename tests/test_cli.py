"""The ``sparsegui`` command line: inspect and apply on every loader, and one-line errors with exit status 2."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsegui import __version__
from sparsegui.cli import main
from sparsegui.core.demos import build_demo
from sparsegui.core.loading.hdf5_files import load_hdf5

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

LENET_SHAPES = {
    "conv1.weight": [6, 1, 3, 3], "conv1.bias": [6],
    "conv2.weight": [16, 6, 3, 3], "conv2.bias": [16],
    "fc1.weight": [120, 400], "fc1.bias": [120],
    "fc2.weight": [84, 120], "fc2.bias": [84],
    "fc3.weight": [10, 84], "fc3.bias": [10],
}
LENET_PARAMETERS = sum(math.prod(s) for s in LENET_SHAPES.values())
EMA_ZEROS = 10  # the 'ema' state_dict of the training checkpoint has this many zeros in conv1.weight

RECIPE = {"steps": [
    {"op": "prune", "method": "l1_unstructured", "targets": ["conv1.weight"], "amount": 0.5},
    {"op": "global", "method": "l1_unstructured", "targets": ["fc*.weight"], "amount": 0.2},
    {"op": "prune", "method": "foobar", "targets": ["fc3.bias"]},
]}
FC_WEIGHTS = ("fc1.weight", "fc2.weight", "fc3.weight")
EXPECTED_ZEROS = {
    "conv1.weight": 27,
    "fc*.weight": round(0.2 * sum(math.prod(LENET_SHAPES[k]) for k in FC_WEIGHTS)),
    "fc3.bias": 5,
}
EXPECTED_TOTAL_ZEROS = sum(EXPECTED_ZEROS.values())
PRUNED = {"conv1.weight", *FC_WEIGHTS, "fc3.bias"}


# -- running the command ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        assert self.code == 0, self.err
        return json.loads(self.out)


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> Result:
    """Run ``sparsegui ARGS`` in this process; argparse's SystemExit counts as the exit status."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return Result(code, out, err)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit status 2, nothing on stdout, exactly one stderr line ``error: …`` and no traceback."""
    assert result.code == 2, (result.code, result.err)
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), result.err
    assert result.err.endswith("\n")
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- the checkpoint files --------------------------------------------------------------------------------------------


@dataclass
class Files:
    root: Path
    paths: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]


def _lenet_state() -> dict[str, torch.Tensor]:
    return build_demo("lenet").state_dict()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """Every kind of checkpoint SparseGUI opens, each holding the tutorial's LeNet."""
    root = tmp_path_factory.mktemp("checkpoints")
    f = Files(root)
    model = build_demo("lenet")
    state = model.state_dict()

    f.paths["pt"] = root / "lenet.pt"
    torch.save(state, f["pt"])

    ema = {k: v * 2 for k, v in state.items()}
    ema["conv1.weight"].view(-1)[:EMA_ZEROS] = 0
    f.paths["ckpt"] = root / "checkpoint.pth"
    torch.save({"epoch": 7, "model": state, "ema": ema, "optimizer": {"lr": 0.1, "momentum": 0.9}}, f["ckpt"])

    f.paths["dp"] = root / "dataparallel.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, f["dp"])

    f.paths["legacy"] = root / "legacy.pt"
    torch.save(state, f["legacy"], _use_new_zipfile_serialization=False)

    f.paths["safetensors"] = root / "lenet.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, f["safetensors"])

    shards = root / "sharded"
    shards.mkdir()
    keys = list(state)
    weight_map = {}
    for i, part in enumerate((keys[:4], keys[4:]), 1):
        shard = f"model-0000{i}-of-00002.safetensors"
        save_file({k: state[k] for k in part}, shards / shard)
        weight_map.update(dict.fromkeys(part, shard))
    f.paths["sharded"] = shards / "model.safetensors.index.json"
    total = sum(t.numel() * t.element_size() for t in state.values())
    f["sharded"].write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}),
                            encoding="utf-8")

    f.paths["h5"] = root / "plain.h5"
    with h5py.File(f["h5"], "w") as h5:
        for key, tensor in state.items():
            h5.create_dataset(key.replace(".", "/"), data=tensor.numpy())

    f.paths["full"] = root / "full_model.pt"
    torch.save(model, f["full"])

    f.paths["script"] = root / "scripted.pt"
    torch.jit.script(model).save(str(f["script"]))

    f.paths["recipe"] = root / "recipe.json"
    f["recipe"].write_text(json.dumps(RECIPE), encoding="utf-8")
    return f


@dataclass(frozen=True)
class Loader:
    """One way to name a model on the command line, and what its inspection must say about the source."""

    id: str
    args: Callable[[Files], list[object]]
    source: dict[str, Any]
    prefix: str = ""
    zeros: int = 0


LOADERS = [
    Loader("demo", lambda f: ["--demo", "lenet"], {"format": "demo", "demo": "lenet", "path": None}),
    Loader("pt", lambda f: [f["pt"]], {"format": "torch zip checkpoint", "inferred": True, "trusted": False}),
    Loader("checkpoint-key", lambda f: [f["ckpt"], "--key", "ema"],
           {"format": "torch zip checkpoint", "key": "ema", "candidates": ["model", "ema"]}, zeros=EMA_ZEROS),
    Loader("checkpoint-default", lambda f: [f["ckpt"]], {"key": "model"}),
    Loader("module-prefix", lambda f: [f["dp"]], {"prefix": "module."}, prefix="module."),
    Loader("legacy", lambda f: [f["legacy"]], {"format": "legacy torch pickle", "inferred": True}),
    Loader("safetensors", lambda f: [f["safetensors"]], {"format": "safetensors", "inferred": True}),
    Loader("sharded", lambda f: [f["sharded"]], {"format": "sharded safetensors index"}),
    Loader("h5", lambda f: [f["h5"]], {"format": "HDF5", "inferred": True}),
    Loader("arch", lambda f: [f["pt"], "--arch", "sparsegui.core.demos:lenet"],
           {"arch": "sparsegui.core.demos:lenet", "inferred": False}),
    Loader("full-pickle", lambda f: ["--trust", f["full"]], {"format": "torch zip checkpoint", "trusted": True}),
    Loader("torchscript", lambda f: ["--trust", f["script"]], {"format": "TorchScript archive", "trusted": True}),
]
IDS = [loader.id for loader in LOADERS]


# -- the JSON schema ------------------------------------------------------------------------------------------------


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_schema(report: dict[str, Any]) -> None:
    """Check ``inspect --json`` field by field, and that every total is the sum over tensors."""
    assert {"source", "totals", "modules"} <= set(report)
    source = report["source"]
    for key in ("path", "format", "demo", "key", "prefix", "arch", "inferred", "trusted", "warnings"):
        assert key in source, key
    assert isinstance(source["format"], str) and isinstance(source["warnings"], list)
    assert isinstance(source["inferred"], bool) and isinstance(source["trusted"], bool)

    modules = report["modules"]
    assert isinstance(modules, list) and modules
    names = [m["name"] for m in modules]
    assert names[0] == "", "the root module comes first, named ''"
    assert len(set(names)) == len(names)
    total_numel = total_zeros = 0
    for module in modules:
        assert {"name", "type", "parameters", "buffers", "hooks", "tensors"} <= set(module)
        assert isinstance(module["name"], str) and isinstance(module["type"], str) and module["type"]
        if module["name"]:
            parent = module["name"].rpartition(".")[0]
            assert parent in names, f"{module['name']} is qualified by its parent path"
        params = {}
        for p in module["parameters"]:
            assert {"name", "shape", "dtype", "device", "numel"} <= set(p)
            assert isinstance(p["name"], str) and "." not in p["name"]
            assert all(is_int(d) for d in p["shape"])
            assert is_int(p["numel"]) and p["numel"] == math.prod(p["shape"])
            assert p["dtype"] == "float32" and p["device"] == "cpu"
            params[p["name"]] = p
        buffers = {}
        for b in module["buffers"]:
            assert {"name", "shape", "dtype"} <= set(b)
            assert isinstance(b["name"], str) and "." not in b["name"] and not b["dtype"].startswith("torch.")
            assert all(is_int(d) for d in b["shape"])
            buffers[b["name"]] = b
        hooked = {}
        for hook in module["hooks"]:
            assert {"kind", "class", "tensor", "methods"} <= set(hook)
            assert isinstance(hook["kind"], str) and isinstance(hook["class"], str)
            assert isinstance(hook["methods"], list)
            for method in hook["methods"]:
                assert isinstance(method["class"], str)
            if hook["tensor"] is not None:
                assert hook["kind"] == "forward_pre" and hook["methods"]
                hooked[hook["tensor"]] = hook
        module_numel = module_zeros = 0
        for t in module["tensors"]:
            assert {"name", "shape", "numel", "zeros", "sparsity", "pruned"} <= set(t)
            assert isinstance(t["name"], str) and "." not in t["name"], "tensor names are local"
            assert is_int(t["numel"]) and t["numel"] == math.prod(t["shape"])
            assert is_int(t["zeros"]) and 0 <= t["zeros"] <= t["numel"]
            assert t["sparsity"] == pytest.approx(t["zeros"] / t["numel"] if t["numel"] else 0.0)
            assert isinstance(t["pruned"], bool)
            assert t["pruned"] == (t["name"] in hooked)
            if t["pruned"]:
                assert params[t["name"] + "_orig"]["shape"] == t["shape"]
                assert buffers[t["name"] + "_mask"]["shape"] == t["shape"]
            else:
                assert params[t["name"]]["shape"] == t["shape"]
            module_numel += t["numel"]
            module_zeros += t["zeros"]
        if "totals" in module:
            assert module["totals"]["parameters"] == module_numel
            assert module["totals"]["zeros"] == module_zeros
        total_numel += module_numel
        total_zeros += module_zeros

    totals = report["totals"]
    assert set(totals) >= {"parameters", "zeros", "sparsity"}
    assert totals["parameters"] == total_numel
    assert totals["zeros"] == total_zeros
    assert totals["sparsity"] == pytest.approx(total_zeros / total_numel if total_numel else 0.0)


def tensors_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Qualified tensor name → its JSON record."""
    out = {}
    for module in report["modules"]:
        for t in module["tensors"]:
            out[f"{module['name']}.{t['name']}" if module["name"] else t["name"]] = t
    return out


def hooks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for module in report["modules"]:
        for hook in module["hooks"]:
            if hook["tensor"] is not None:
                out[f"{module['name']}.{hook['tensor']}" if module["name"] else hook["tensor"]] = hook
    return out


# -- inspect --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", LOADERS, ids=IDS)
def test_inspect_json_on_every_loader(capsys: pytest.CaptureFixture[str], files: Files, loader: Loader) -> None:
    """inspect --json prints one well-formed object describing LeNet's tensors and the source, on every loader."""
    result = cli(capsys, "inspect", *loader.args(files), "--json")
    report = result.json()
    check_schema(report)
    for key, value in loader.source.items():
        assert report["source"][key] == value, key
    tensors = tensors_of(report)
    assert {k: v["shape"] for k, v in tensors.items()} == LENET_SHAPES
    assert report["totals"]["parameters"] == LENET_PARAMETERS
    assert report["totals"]["zeros"] == loader.zeros
    assert tensors["conv1.weight"]["zeros"] == loader.zeros
    assert not any(t["pruned"] for t in tensors.values())
    assert {m["name"] for m in report["modules"]} == {"", "conv1", "conv2", "fc1", "fc2", "fc3"}
    types = {m["name"]: m["type"] for m in report["modules"]}
    assert types["conv1"] == "Conv2d" and types["fc1"] == "Linear"
    if loader.id in ("demo", "arch", "full-pickle"):
        assert types[""] == "LeNet"
    assert result.err == ""


@pytest.mark.parametrize("loader", LOADERS, ids=IDS)
def test_inspect_table_on_every_loader(capsys: pytest.CaptureFixture[str], files: Files, loader: Loader) -> None:
    """inspect prints the source, the totals and one table row per tensor with shape, numel, zeros and sparsity."""
    result = cli(capsys, "inspect", *loader.args(files))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    paths = [a for a in loader.args(files) if isinstance(a, Path)]
    assert lines[0].startswith(f"{paths[0]} (" if paths else "lenet (demo)")
    if paths:
        assert lines.pop(1) == f"sha256 {hashlib.sha256(paths[0].read_bytes()).hexdigest()}"
    zeros_text = f"{loader.zeros:,} zeros"
    assert lines[1] == f"{LENET_PARAMETERS:,} parameters, {zeros_text}, sparsity {loader.zeros / LENET_PARAMETERS:.2%}"
    assert lines[3].split() == ["MODULE", "TYPE", "TENSOR", "SHAPE", "NUMEL", "ZEROS", "SPARSITY", "PRUNING"]
    rows = {(cells[0], cells[2]): cells for cells in (line.split() for line in lines[4:]) if len(cells) >= 7}
    assert len(rows) == len(LENET_SHAPES)
    for qualname, shape in LENET_SHAPES.items():
        module, _, tensor = qualname.rpartition(".")
        cells = rows[(module, tensor)]
        assert cells[3] == "×".join(map(str, shape))
        assert cells[4] == f"{math.prod(shape):,}"
    conv1 = rows[("conv1", "weight")]
    assert conv1[1] == "Conv2d"
    assert conv1[5] == str(loader.zeros) and conv1[6] == f"{loader.zeros / 54:.2%}"
    if loader.source.get("prefix"):
        assert "prefix 'module.'" in lines[0]
    if loader.source.get("key"):
        assert f"key {loader.source['key']!r}" in lines[0]


def test_inspect_qualified_module_names(capsys: pytest.CaptureFixture[str]) -> None:
    """Nested modules are named by their full path ('layer1.0.conv1'), the root '' and tensors by local name."""
    report = cli(capsys, "inspect", "--demo", "resnet", "--json").json()
    check_schema(report)
    modules = {m["name"]: m for m in report["modules"]}
    assert modules[""]["type"] == "TinyResNet"
    assert modules["layer1.0.conv1"]["type"] == "Conv2d"
    assert [t["name"] for t in modules["layer1.0.conv1"]["tensors"]] == ["weight"]
    assert [b["name"] for b in modules["layer2.0.bn1"]["buffers"]] == ["running_mean", "running_var",
                                                                       "num_batches_tracked"]
    assert modules["layer2.0.bn1"]["buffers"][2]["dtype"] == "int64"
    assert "layer2.0.downsample.0" in modules
    assert report["totals"]["parameters"] == sum(p.numel() for p in build_demo("resnet").parameters())


def test_inspect_shows_pruning_of_a_saved_pruned_model(
    capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path
) -> None:
    """A model exported with --keep-masks reopens pruned: hooks decoded, masked tensors' zeros counted."""
    out = tmp_path / "pruned.pt"
    assert cli(capsys, "apply", files["recipe"], "--demo", "lenet", "-o", out, "--keep-masks").code == 0
    report = cli(capsys, "inspect", out, "--json").json()
    check_schema(report)
    tensors = tensors_of(report)
    assert {k for k, t in tensors.items() if t["pruned"]} == PRUNED
    assert report["totals"]["zeros"] == EXPECTED_TOTAL_ZEROS
    assert tensors["conv1.weight"]["zeros"] == 27 and tensors["fc3.bias"]["zeros"] == 5
    hook = hooks_of(report)["conv1.weight"]
    assert hook["kind"] == "forward_pre" and hook["methods"][0]["class"] == "CustomFromMask"
    table = cli(capsys, "inspect", out).out
    assert "CustomFromMask(" in table


def test_inspect_json_hooks_record_methods(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Pruning twice shows one hook per tensor listing both methods with their settings."""
    from sparsegui.core.document import Document

    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    doc.prune("ln_structured", ["fc1.weight"], amount=0.25, n=2, dim=0)
    out = doc.export(tmp_path / "twice.pt", keep_masks=True)
    report = cli(capsys, "inspect", out, "--json").json()
    check_schema(report)
    # a reloaded model carries one CustomFromMask holding the combined mask
    assert hooks_of(report)["fc1.weight"]["methods"][0]["class"] == "CustomFromMask"
    live = doc.report().to_json()
    check_schema(live)
    methods = hooks_of(live)["fc1.weight"]["methods"]
    assert [m["class"] for m in methods] == ["L1Unstructured", "LnStructured"]
    assert methods[0]["amount"] == 0.5
    assert methods[1]["amount"] == 0.25 and methods[1]["n"] == 2 and methods[1]["dim"] == 0


def test_full_pickle_is_refused_without_trust(capsys: pytest.CaptureFixture[str], files: Files) -> None:
    """A pickled module or a TorchScript archive is not opened without --trust: one-line error naming --trust."""
    for name in ("full", "script"):
        for json_flag in ([], ["--json"]):
            result = cli(capsys, "inspect", files[name], *json_flag)
            assert_one_line_error(result, files[name].name, "--trust")


def test_checkpoint_without_key_picks_model_not_ema(capsys: pytest.CaptureFixture[str], files: Files) -> None:
    """Without --key a training checkpoint opens its 'model' dict; --key ema opens the other one."""
    default = cli(capsys, "inspect", files["ckpt"], "--json").json()
    ema = cli(capsys, "inspect", files["ckpt"], "--key", "ema", "--json").json()
    assert default["source"]["key"] == "model" and default["totals"]["zeros"] == 0
    assert ema["source"]["key"] == "ema" and ema["totals"]["zeros"] == EMA_ZEROS


# -- apply ----------------------------------------------------------------------------------------------------------


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Read an exported file with its format's own library (not through SparseGUI's model loader)."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix == ".h5":
        return load_hdf5(path)[0]
    loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    assert isinstance(loaded, dict)
    return loaded


def zeros_of(state: dict[str, torch.Tensor], key: str) -> int:
    return int((state[key] == 0).sum())


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".h5"])
@pytest.mark.parametrize("loader", LOADERS, ids=IDS)
def test_apply_on_every_loader(
    capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path, loader: Loader, suffix: str
) -> None:
    """apply writes a clean state_dict with the source's keys and expected zeros that reopens; input untouched."""
    source_args = loader.args(files)
    inputs = [a for a in source_args if isinstance(a, Path)]
    before = {p: p.read_bytes() for p in inputs}
    out = tmp_path / f"out{suffix}"
    result = cli(capsys, "apply", files["recipe"], *source_args, "-o", out)
    assert result.code == 0, result.err
    assert result.err == ""
    assert result.out.splitlines() == [
        f"applied 3 step(s); wrote {out} ({LENET_PARAMETERS:,} parameters, "
        f"sparsity {EXPECTED_TOTAL_ZEROS / LENET_PARAMETERS * 100:.2f}%)"
    ]
    assert {p: p.read_bytes() for p in inputs} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]

    state = read_state(out)
    p = loader.prefix
    assert {k: list(v.shape) for k, v in state.items()} == {p + k: s for k, s in LENET_SHAPES.items()}
    assert zeros_of(state, p + "conv1.weight") == 27
    assert sum(zeros_of(state, p + k) for k in FC_WEIGHTS) == EXPECTED_ZEROS["fc*.weight"]
    assert torch.equal(state[p + "fc3.bias"][::2], torch.zeros(5))
    assert zeros_of(state, p + "fc3.bias") == 5
    assert zeros_of(state, p + "conv2.weight") == 0

    reopened = cli(capsys, "inspect", out, "--json").json()
    check_schema(reopened)
    assert reopened["totals"]["zeros"] == EXPECTED_TOTAL_ZEROS
    assert reopened["source"]["prefix"] == p
    assert not any(t["pruned"] for t in tensors_of(reopened).values())


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".h5"])
def test_apply_keep_masks(capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path, suffix: str) -> None:
    """--keep-masks writes X_orig (original values) and X_mask for each pruned tensor instead of X."""
    out = tmp_path / f"masked{suffix}"
    result = cli(capsys, "apply", files["recipe"], files["dp"], "-o", out, "--keep-masks")
    assert result.code == 0, result.err
    state = read_state(out)
    original = _lenet_state()
    expected = set()
    for key in LENET_SHAPES:
        expected |= {f"module.{key}_orig", f"module.{key}_mask"} if key in PRUNED else {f"module.{key}"}
    assert set(state) == expected
    for key in PRUNED:
        assert torch.equal(state[f"module.{key}_orig"], original[key]), key
        mask = state[f"module.{key}_mask"]
        assert list(mask.shape) == LENET_SHAPES[key]
        assert set(mask.unique().tolist()) <= {0, 1}
    assert int((state["module.conv1.weight_mask"] == 0).sum()) == 27
    assert sum(int((state[f"module.{k}_mask"] == 0).sum()) for k in FC_WEIGHTS) == EXPECTED_ZEROS["fc*.weight"]
    reopened = cli(capsys, "inspect", out, "--json").json()
    assert reopened["totals"]["zeros"] == EXPECTED_TOTAL_ZEROS
    assert {k for k, t in tensors_of(reopened).items() if t["pruned"]} == PRUNED


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".h5"])
def test_apply_masks_out(capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path, suffix: str) -> None:
    """--masks-out also writes every pruned tensor's boolean mask, keyed by qualified tensor name."""
    out, masks = tmp_path / "model.pt", tmp_path / f"masks{suffix}"
    result = cli(capsys, "apply", files["recipe"], files["pt"], "-o", out, "--masks-out", masks)
    assert result.code == 0, result.err
    loaded = read_state(masks)
    assert set(loaded) == PRUNED
    state = read_state(out)
    for key, mask in loaded.items():
        assert mask.dtype == torch.bool, key
        assert torch.equal(mask, state[key] != 0), key
    assert int((~loaded["conv1.weight"]).sum()) == 27


def test_apply_device_cpu(capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path) -> None:
    """--device cpu prunes on the CPU and gives the same file as the default."""
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert cli(capsys, "apply", files["recipe"], "--demo", "lenet", "-o", a, "--device", "cpu").code == 0
    assert cli(capsys, "apply", files["recipe"], "--demo", "lenet", "-o", b).code == 0
    sa, sb = read_state(a), read_state(b)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps", "tpu"], ids=["dev-gpu", "dev-gpu0", "dev-mps", "dev-tpu"])
def test_apply_missing_device_is_an_error(
    capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path, device: str
) -> None:
    """--device naming a device this machine lacks is a one-line error, exit 2, and nothing is written."""
    if device == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("MPS exists here")
    out, masks = tmp_path / "out.pt", tmp_path / "masks.pt"
    result = cli(capsys, "apply", files["recipe"], files["pt"], "-o", out, "--masks-out", masks, "--device", device)
    assert_one_line_error(result, repr(device))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.cuda
def test_apply_on_cuda_matches_cpu(capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path) -> None:
    """With a GPU, --device cuda gives the same deterministic result as the CPU and writes CPU tensors."""
    a, b = tmp_path / "cpu.pt", tmp_path / "gpu.pt"
    assert cli(capsys, "apply", files["recipe"], files["pt"], "-o", a).code == 0
    assert cli(capsys, "apply", files["recipe"], files["pt"], "-o", b, "--device", "cuda").code == 0
    sa, sb = read_state(a), read_state(b)
    assert all(sb[k].device.type == "cpu" and torch.equal(sa[k], sb[k]) for k in sa)


def test_apply_resolves_files_relative_to_the_recipe(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe's mask file and plugin file are found next to the recipe, whatever the working directory."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    masks = {"fc2.weight": torch.rand(84, 120, generator=torch.Generator().manual_seed(1)) > 0.3}
    torch.save(masks, folder / "masks.pt")
    (folder / "plug.py").write_text(
        "from torch.nn.utils import prune\n\n\n"
        "class DropFirst(prune.BasePruningMethod):\n"
        "    PRUNING_TYPE = 'unstructured'\n\n"
        "    def compute_mask(self, t, default_mask):\n"
        "        mask = default_mask.clone()\n"
        "        mask.view(-1)[:4] = 0\n"
        "        return mask\n",
        encoding="utf-8",
    )
    (folder / "r.json").write_text(json.dumps({"steps": [
        {"op": "prune", "method": "custom_from_mask", "targets": ["fc2.weight"], "mask": "masks.pt"},
        {"op": "prune", "method": "plug.py:DropFirst", "targets": ["fc3.bias"]},
    ]}), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = cli(capsys, "apply", "../recipes/r.json", "--demo", "lenet", "-o", "out.pt", "--trust")
    assert result.code == 0, result.err
    state = read_state(work / "out.pt")
    assert torch.equal(state["fc2.weight"] != 0, masks["fc2.weight"])
    assert zeros_of(state, "fc3.bias") == 4 and torch.equal(state["fc3.bias"][:4], torch.zeros(4))


def test_apply_options_may_come_between_positionals(
    capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path
) -> None:
    """Options may sit anywhere: 'apply RECIPE --trust PATH -o OUT' and 'apply RECIPE -o OUT PATH' both work."""
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    assert cli(capsys, "apply", files["recipe"], "--trust", files["full"], "-o", a).code == 0
    result = cli(capsys, "apply", files["recipe"], "-o", b, files["pt"])
    assert result.code == 0, result.err
    assert zeros_of(read_state(a), "conv1.weight") == zeros_of(read_state(b), "conv1.weight") == 27


# -- errors ---------------------------------------------------------------------------------------------------------


def _write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def _bad_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02this is not a pickle")
        archive.writestr("archive/version", b"3\n")
    return path


def _recipe(step: dict[str, Any]) -> str:
    return json.dumps({"steps": [RECIPE["steps"][0], step]})


@dataclass(frozen=True)
class BadInput:
    """An apply command that must fail: ``make(files, folder)`` builds its arguments (before ``-o OUT``)."""

    id: str
    make: Callable[[Files, Path], list[object]]
    fragment: str


BAD_APPLY = [
    BadInput("missing-file", lambda f, d: [f["recipe"], d / "missing.pt"], "missing.pt"),
    BadInput("truncated-zip", lambda f, d: [f["recipe"], _write(d / "t.pt", f["pt"].read_bytes()[:3000])], "t.pt"),
    BadInput("truncated-legacy", lambda f, d: [f["recipe"], _write(d / "l.pt", f["legacy"].read_bytes()[:500])],
             "l.pt"),
    BadInput("not-a-pickle", lambda f, d: [f["recipe"], _bad_zip(d / "z.pt")], "z.pt"),
    BadInput("garbage", lambda f, d: [f["recipe"], _write(d / "g.pt", "hello, not a model\n")], "g.pt"),
    BadInput("empty", lambda f, d: [f["recipe"], _write(d / "e.pt", b"")], "e.pt"),
    BadInput("corrupt-safetensors",
             lambda f, d: [f["recipe"], _write(d / "c.safetensors", f["safetensors"].read_bytes()[:200])],
             "c.safetensors"),
    BadInput("corrupt-h5", lambda f, d: [f["recipe"], _write(d / "c.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 600)],
             "c.h5"),
    BadInput("missing-shard", lambda f, d: [f["recipe"], _write(d / "i.index.json", json.dumps(
        {"weight_map": {"conv1.weight": "nope.safetensors"}}))], "nope.safetensors"),
    BadInput("recipe-as-model", lambda f, d: [f["recipe"], f["recipe"]], "recipe"),
    BadInput("untrusted-pickle", lambda f, d: [f["recipe"], f["full"]], "--trust"),
    BadInput("untrusted-torchscript", lambda f, d: [f["recipe"], f["script"]], "--trust"),
    BadInput("wrong-key", lambda f, d: [f["recipe"], f["ckpt"], "--key", "teacher"], "teacher"),
    BadInput("wrong-arch", lambda f, d: [f["recipe"], f["pt"], "--arch", "sparsegui.core.demos:resnet"], "resnet"),
    BadInput("unknown-target", lambda f, d: [_write(d / "r.json", _recipe(
        {"op": "prune", "method": "l1_unstructured", "targets": ["conv9.weight"], "amount": 0.5})), f["pt"]],
        "conv9.weight"),
    BadInput("amount-1.5", lambda f, d: [_write(d / "r.json", _recipe(
        {"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight"], "amount": 1.5})), f["pt"]], "1.5"),
    BadInput("amount-negative", lambda f, d: [_write(d / "r.json", _recipe(
        {"op": "global", "method": "l1_unstructured", "targets": ["*"], "amount": -0.5})), "--demo", "lenet"],
        "-0.5"),
    BadInput("unknown-method", lambda f, d: [_write(d / "r.json", _recipe(
        {"op": "prune", "method": "snip", "targets": ["fc1.weight"], "amount": 0.5})), f["pt"]], "snip"),
    BadInput("malformed-json", lambda f, d: [_write(d / "r.json", '{"steps": [{"op": "prune",'), f["pt"]],
             "r.json"),
    BadInput("unknown-op", lambda f, d: [_write(d / "r.json", _recipe({"op": "squash", "targets": ["fc1.weight"]})),
                                         f["pt"]], "squash"),
    BadInput("unknown-key", lambda f, d: [_write(d / "r.json", _recipe(
        {"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight"], "amont": 0.5})), f["pt"]],
        "amont"),
    BadInput("recipe-not-object", lambda f, d: [_write(d / "r.json", "[1, 2, 3]"), f["pt"]], "steps"),
    BadInput("missing-recipe", lambda f, d: [d / "nope.json", f["pt"]], "nope.json"),
    BadInput("unknown-demo", lambda f, d: [f["recipe"], "--demo", "alexnet"], "alexnet"),
    BadInput("path-and-demo", lambda f, d: [f["recipe"], f["pt"], "--demo", "lenet"], "--demo"),
    BadInput("no-model", lambda f, d: [f["recipe"]], "PATH"),
    BadInput("unknown-argument", lambda f, d: [f["recipe"], f["pt"], "--bogus"], "--bogus"),
    BadInput("bad-arch-kwargs", lambda f, d: [f["recipe"], f["pt"], "--arch", "sparsegui.core.demos:lenet",
                                              "--arch-kwargs", "{nope"], "--arch-kwargs"),
]


@pytest.mark.parametrize("preexisting", [False, True], ids=["fresh", "existing-output"])
@pytest.mark.parametrize("bad", BAD_APPLY, ids=[b.id for b in BAD_APPLY])
def test_apply_bad_input_is_one_line_error(
    capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path, bad: BadInput, preexisting: bool
) -> None:
    """Bad input to apply: one 'error: …' line, exit 2, no traceback; outputs absent or left byte-identical."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    outdir = tmp_path / "out"
    outdir.mkdir()
    out, masks = outdir / "model.pt", outdir / "masks.pt"
    if preexisting:
        out.write_bytes(b"precious old output")
        masks.write_bytes(b"precious old masks")
    args = bad.make(files, inputs)
    result = cli(capsys, "apply", *args, "-o", out, "--masks-out", masks)
    assert_one_line_error(result, bad.fragment)
    if preexisting:
        assert out.read_bytes() == b"precious old output"
        assert masks.read_bytes() == b"precious old masks"
        assert sorted(p.name for p in outdir.iterdir()) == ["masks.pt", "model.pt"]
    else:
        assert list(outdir.iterdir()) == [], "nothing (not even a temporary file) is left behind"


@pytest.mark.parametrize(
    ("output", "masks_out", "fragment"),
    [
        ("model.onnx", None, ".onnx"),
        ("no/such/model.pt", None, "no/such"),
        ("model.pt", "masks.xyz", ".xyz"),
        ("model.pt", "gone/masks.pt", "gone"),
        ("model.pt", "masks", "masks"),
    ],
    ids=["bad-extension", "missing-folder", "masks-bad-extension", "masks-missing-folder", "masks-no-extension"],
)
def test_apply_bad_output_is_one_line_error(
    capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path, output: str, masks_out: str | None,
    fragment: str,
) -> None:
    """A bad -o or --masks-out path is a one-line error before any write; an existing output stays identical."""
    out = tmp_path / output
    extra = ["--masks-out", tmp_path / masks_out] if masks_out else []
    assert_one_line_error(cli(capsys, "apply", files["recipe"], "--demo", "lenet", "-o", out, *extra), fragment)
    assert list(tmp_path.rglob("*")) == []
    if out.parent.is_dir():
        out.write_bytes(b"old")
        assert_one_line_error(cli(capsys, "apply", files["recipe"], "--demo", "lenet", "-o", out, *extra), fragment)
        assert list(tmp_path.rglob("*")) == [out]
        assert out.read_bytes() == b"old"


def test_apply_requires_output(capsys: pytest.CaptureFixture[str], files: Files) -> None:
    """apply without -o is a usage error: one line, exit 2."""
    assert_one_line_error(cli(capsys, "apply", files["recipe"], "--demo", "lenet"), "-o")


BAD_INSPECT = [
    BadInput("missing-file", lambda f, d: [d / "missing.pt"], "missing.pt"),
    BadInput("corrupt", lambda f, d: [_write(d / "t.pt", f["pt"].read_bytes()[:3000])], "t.pt"),
    BadInput("folder", lambda f, d: [d], str(Path())),
    BadInput("unknown-demo", lambda f, d: ["--demo", "alexnet"], "alexnet"),
    BadInput("path-and-demo", lambda f, d: [f["pt"], "--demo", "lenet"], "--demo"),
    BadInput("demo-with-key", lambda f, d: ["--demo", "lenet", "--key", "ema"], "--key"),
    BadInput("no-model", lambda f, d: [], "PATH"),
    BadInput("unknown-argument", lambda f, d: ["--demo", "lenet", "--bogus"], "--bogus"),
    BadInput("key-on-safetensors", lambda f, d: [f["safetensors"], "--key", "ema"], "--key"),
    BadInput("arch-not-importable", lambda f, d: [f["pt"], "--arch", "no.such.module:net"], "no.such.module"),
]


@pytest.mark.parametrize("json_flag", [False, True], ids=["table", "json"])
@pytest.mark.parametrize("bad", BAD_INSPECT, ids=[b.id for b in BAD_INSPECT])
def test_inspect_bad_input_is_one_line_error(
    capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path, bad: BadInput, json_flag: bool
) -> None:
    """Bad input to inspect (table or --json): one 'error: …' line, exit 2, no traceback, nothing on stdout."""
    result = cli(capsys, "inspect", *bad.make(files, tmp_path), *(["--json"] if json_flag else []))
    assert_one_line_error(result, bad.fragment)


@pytest.fixture
def no_gui(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the desktop app unimportable, as in a build without it (and so no window can block a test)."""
    monkeypatch.setitem(sys.modules, "sparsegui.gui.app", None)


@pytest.mark.usefixtures("no_gui")
def test_unknown_subcommand_option_and_gui_argument(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Unknown top-level arguments and unknown files given to the app are one-line errors too."""
    assert_one_line_error(cli(capsys, "--bogus"), "--bogus")
    assert_one_line_error(cli(capsys, "methods", "--bogus"), "--bogus")
    assert_one_line_error(cli(capsys, tmp_path / "missing.pt"), "missing.pt")


# -- the other commands -------------------------------------------------------------------------------------------


def test_methods_lists_builtins_and_foobar(capsys: pytest.CaptureFixture[str]) -> None:
    """'sparsegui methods' lists every built-in and the foobar plugin from its entry point, with its settings."""
    result = cli(capsys, "methods")
    assert result.code == 0 and result.err == ""
    rows = {line.split()[0]: line for line in result.out.splitlines() if line.strip()}
    for name in ("identity", "random_unstructured", "l1_unstructured", "random_structured", "ln_structured",
                 "custom_from_mask", "foobar"):
        assert name in rows, name
    assert "sparsegui.plugins.foobar:FooBarPruningMethod" in rows["foobar"]
    assert "Prune every other entry" in rows["foobar"]
    assert "amount, n, dim" in rows["ln_structured"]
    assert "seed" in rows["random_unstructured"] and "seed" not in rows["l1_unstructured"]


def test_devices_lists_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    """'sparsegui devices' lists the CPU first (and a cuda:N line per GPU only where CUDA exists)."""
    result = cli(capsys, "devices")
    assert result.code == 0 and result.err == ""
    ids = [line.split()[0] for line in result.out.splitlines() if line.strip()]
    assert ids[0] == "cpu"
    assert sum(i.startswith("cuda:") for i in ids) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


@pytest.mark.usefixtures("no_gui")
def test_no_arguments_prints_lenet(capsys: pytest.CaptureFixture[str]) -> None:
    """Without the GUI, 'sparsegui' alone prints the inspection of the default demo, LeNet, and exits 0."""
    result = cli(capsys)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "lenet (demo)"
    assert lines[1] == f"{LENET_PARAMETERS:,} parameters, 0 zeros, sparsity 0.00%"
    assert sum(1 for line in lines if line.startswith(("conv", "fc"))) == len(LENET_SHAPES)
    assert "Traceback" not in result.err


@pytest.mark.usefixtures("no_gui")
def test_path_alone_prints_its_inspection(capsys: pytest.CaptureFixture[str], files: Files) -> None:
    """Without the GUI, 'sparsegui PATH' prints that file's inspection."""
    result = cli(capsys, files["safetensors"])
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].startswith(f"{files['safetensors']} (safetensors)")


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--help lists the subcommands and --version prints the version, both with exit status 0."""
    result = cli(capsys, "--help")
    assert result.code == 0
    for command in ("inspect", "apply", "methods", "devices"):
        assert command in result.out
    result = cli(capsys, "--version")
    assert result.code == 0 and result.out.strip() == f"sparsegui {__version__}"
    result = cli(capsys, "apply", "--help")
    assert result.code == 0 and "--keep-masks" in result.out and "--masks-out" in result.out


# -- the real entry points ------------------------------------------------------------------------------------------


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("SPARSEGUI_DEBUG", None)
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_python_m_sparsegui_version(tmp_path: Path) -> None:
    """'python -m sparsegui --version' runs the same entry point and prints the version."""
    proc = _run([sys.executable, "-m", "sparsegui", "--version"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"sparsegui {__version__}"


def test_sparsegui_script_inspects_lenet(tmp_path: Path) -> None:
    """The installed 'sparsegui' script runs 'inspect --demo lenet' and prints the table."""
    exe = shutil.which("sparsegui")
    if exe is None:
        exe_args = [sys.executable, "-c", "import sys; from sparsegui.cli import main; sys.exit(main())"]
    else:
        exe_args = [exe]
    proc = _run([*exe_args, "inspect", "--demo", "lenet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "lenet (demo)"
    assert any(line.split()[:3] == ["fc1", "Linear", "weight"] for line in lines)


def test_subprocess_error_is_one_line_exit_2(tmp_path: Path) -> None:
    """A real process given a malformed recipe exits 2 with one 'error:' line and writes nothing."""
    (tmp_path / "bad.json").write_text('{"steps": [{"op": "prune", "method": "foobar", "targets": []}]}')
    proc = _run([sys.executable, "-m", "sparsegui", "apply", "bad.json", "--demo", "lenet", "-o", "out.pt"], tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert "step 1" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_quick_exit_flushes_everything_a_command_printed(tmp_path: Path) -> None:
    """A headless command ends with os._exit after flushing: a long output through a pipe arrives whole, the file
    is written, and the exit status is the command's."""
    recipe = tmp_path / "r.json"
    recipe.write_text('{"steps": [{"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight"], '
                      '"amount": 0.5}]}')
    proc = _run([sys.executable, "-m", "sparsegui", "apply", str(recipe), "--demo", "lenet", "-o", "out.pt"],
                tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("applied 1 step(s); wrote out.pt") and proc.stdout.endswith("%)\n")
    assert torch.load(tmp_path / "out.pt", weights_only=True)["fc1.weight"].eq(0).sum() > 0
    listing = _run([sys.executable, "-m", "sparsegui", "inspect", "--demo", "transformer", "--json"], tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)  # the whole document: a cut-off one would not parse


def test_quick_exit_after_the_reader_went_away(tmp_path: Path) -> None:
    """`sparsegui methods | head -0`: the reader is gone before the command writes; it stops quietly with status
    0, as Unix tools do, whether the write fails while it prints or at the flush before its quick exit."""
    env = {**os.environ}
    env.pop("SPARSEGUI_DEBUG", None)
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: every write meets EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "sparsegui", "methods"], stdout=write_end,
                              stderr=subprocess.PIPE, cwd=tmp_path, env=env, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
