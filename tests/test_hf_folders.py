"""Hugging Face model folders, first class: small random models built with transformers from a config, saved as
folders of three shards, opened with their real classes, pruned, exported to a folder that ``from_pretrained``
loads — ties kept, zeros exact, logits equal to the pruned model's — and refused with one line when damaged."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.utils import prune
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
)

from sparsegui.core.document import Document
from sparsegui.core.errors import LoadError
from tests.test_cli import cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SMALL = {"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 96}
MODELS: dict[str, tuple[Callable[..., Any], Any]] = {
    "gpt2": (GPT2LMHeadModel, GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=96, n_positions=32,
                                         bos_token_id=0, eos_token_id=0)),
    "llama-tied": (LlamaForCausalLM, LlamaConfig(hidden_size=32, intermediate_size=64, num_key_value_heads=2,
                                                 tie_word_embeddings=True, **SMALL)),
    "llama": (LlamaForCausalLM, LlamaConfig(hidden_size=32, intermediate_size=64, num_key_value_heads=2,
                                            tie_word_embeddings=False, **SMALL)),
    "bert": (BertForMaskedLM, BertConfig(hidden_size=32, intermediate_size=64, **SMALL)),
    "mixtral": (MixtralForCausalLM, MixtralConfig(hidden_size=32, intermediate_size=48, num_key_value_heads=2,
                                                  num_local_experts=4, num_experts_per_tok=2, **SMALL)),
}
CLASSES = {"gpt2": {"GPT2Attention", "Conv1D", "GPT2Block"}, "llama-tied": {"LlamaDecoderLayer", "LlamaAttention"},
           "llama": {"LlamaDecoderLayer", "LlamaMLP"}, "bert": {"BertLayer", "BertSelfAttention"}}
TIES = {"gpt2": [["transformer.wte.weight", "lm_head.weight"]],
        "llama-tied": [["model.embed_tokens.weight", "lm_head.weight"]], "llama": [],
        "bert": [["bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"],
                 ["cls.predictions.bias", "cls.predictions.decoder.bias"]]}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each model saved by save_pretrained in three shards (plus config, generation config)."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for name, (cls, config) in MODELS.items():
        torch.manual_seed(0)
        model = cls(config)
        total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        model.save_pretrained(root / name, max_shard_size=total // 3 + 64)
        (root / name / "tokenizer_config.json").write_text('{"model_max_length": 32}')
        out[name] = root / name
    return out


def weight_names(doc: Document) -> list[str]:
    return [n for n in doc.tensor_names() if len(doc.state.tensors[n].values.shape) == 2]


@pytest.mark.parametrize("name", ["gpt2", "llama-tied", "llama", "bert"])
def test_real_classes_ties_and_axes(folders: dict[str, Path], name: str) -> None:
    doc = Document.open(folders[name])
    assert len(list(folders[name].glob("*.safetensors"))) >= 3
    assert doc.source.architecture == MODELS[name][0].__name__ and doc.source.warnings == []
    types = {m.type for m in doc.report(counts=False).modules}
    assert CLASSES[name] <= types
    assert doc.structure.tied() == TIES[name]
    cls, config = MODELS[name]
    torch.manual_seed(0)
    reference = cls(config)
    assert doc.report(counts=False).parameters == sum(p.numel() for p in reference.parameters())  # ties once


def test_without_transformers_the_rebuilt_tree_knows_gpt2(folders: dict[str, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers missing: one note, the tree from the keys, GPT-2's Conv1D axes from the config, the tie from
    the config (lm_head.weight is not in the file)."""
    monkeypatch.setitem(sys.modules, "transformers", None)
    doc = Document.open(folders["gpt2"])
    assert doc.source.architecture is None and doc.source.inferred
    assert len(doc.source.warnings) == 1 and "transformers is not installed" in doc.source.warnings[0]
    report = doc.report(counts=False)
    assert report.tensor("transformer.h.0.attn.c_attn.weight").axes == ["in", "out"]
    assert report.tensor("transformer.h.0.mlp.c_proj.weight").axes == ["in", "out"]
    assert report.tensor("transformer.wte.weight").axes == ["vocab", "dim"]
    assert doc.structure.tied() == [["transformer.wte.weight", "lm_head.weight"]]


def test_a_mixture_of_experts_whose_keys_do_not_match_falls_back(folders: dict[str, Path]) -> None:
    """transformers 5 holds Mixtral's experts fused but saves them one by one: the rebuilt tree, said once."""
    doc = Document.open(folders["mixtral"])
    assert doc.source.architecture is None and len(doc.source.warnings) == 1
    assert "keys do not match MixtralForCausalLM" in doc.source.warnings[0]
    assert any(".experts.0." in n for n in doc.tensor_names())


@pytest.mark.parametrize("name", ["gpt2", "llama-tied", "llama", "bert", "mixtral"])
def test_global_prune_exported_to_a_folder_loads_with_from_pretrained(folders: dict[str, Path], tmp_path: Path,
                                                                      name: str) -> None:
    """Exactly the expected zeros, the tie kept, the other files copied, and the logits of the pruned model."""
    cls, _config = MODELS[name]
    doc = Document.open(folders[name])
    targets = weight_names(doc)
    doc.global_prune("l1_unstructured", targets, 0.5)
    out = tmp_path / "pruned"
    doc.export(out, shard_size=20_000)
    assert (out / "model.safetensors.index.json").is_file() and len(list(out.glob("*.safetensors"))) > 1
    for other in ("config.json", "generation_config.json", "tokenizer_config.json"):
        if (folders[name] / other).exists():
            assert (out / other).read_bytes() == (folders[name] / other).read_bytes()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(f.stat().st_size for f in out.glob("*.safetensors")) - sum(
        8 + int.from_bytes(f.read_bytes()[:8], "little") for f in out.glob("*.safetensors"))
    loaded = cls.from_pretrained(out)
    matrices = [p for p in loaded.parameters() if p.dim() >= 2]  # Mixtral's experts load fused into 3-D tensors
    assert sum(p.numel() for p in matrices) == sum(doc.state.tensors[n].numel for n in targets)
    assert sum(int((p == 0).sum()) for p in matrices) == round(0.5 * sum(doc.state.tensors[n].numel
                                                                          for n in targets))
    for group in TIES.get(name, []):
        tensors = [loaded.get_parameter(n) for n in group]
        assert all(t.data_ptr() == tensors[0].data_ptr() for t in tensors), group
    if doc.source.architecture is not None:  # the rebuilt tree of a fallback has no forward of its own
        tokens = torch.randint(0, 96, (2, 7), generator=torch.Generator().manual_seed(1))
        with torch.no_grad(), doc.forward_model() as pruned:
            expected_logits = pruned(tokens).logits
        with torch.no_grad():
            assert torch.equal(loaded.eval()(tokens).logits, expected_logits)
    again = Document.open(out)
    assert again.structure.tied() == doc.structure.tied() and again.source.architecture == doc.source.architecture


def test_ln_structured_on_conv1d_prunes_what_torch_prunes_on_the_real_module(folders: dict[str, Path]) -> None:
    """dim 0 of a Conv1D weight is its input features; the mask equals torch's on the transformers module."""
    doc = Document.open(folders["gpt2"])
    name = "transformer.h.1.mlp.c_fc.weight"
    doc.prune("ln_structured", [name], amount=0.25, n=2, dim=0)
    reference = GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    module = reference.get_submodule("transformer.h.1.mlp.c_fc")
    assert type(module).__name__ == "Conv1D"
    prune.ln_structured(module, "weight", amount=0.25, n=2, dim=0)
    assert torch.equal(doc.model.get_submodule("transformer.h.1.mlp.c_fc").weight_mask, module.weight_mask)
    assert doc.report(counts=False).tensor(name).axes == ["in", "out"]
    removed = (module.weight_mask == 0).all(dim=1).sum()
    assert int(removed) == round(0.25 * module.weight.shape[0])  # whole input features, as the axes say


def test_inspect_folder_json_has_axes_and_ties(folders: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "inspect", folders["gpt2"], "--json")
    report = result.json()
    assert report["tied"] == TIES["gpt2"]
    tensors = {f"{m['name']}.{t['name']}": t for m in report["modules"] for t in m["tensors"]}
    assert tensors["transformer.h.0.attn.c_attn.weight"]["axes"] == ["in", "out"]
    assert tensors["transformer.wte.weight"]["axes"] == ["vocab", "dim"]
    assert tensors["transformer.h.0.ln_1.weight"]["axes"] == ["dim"]
    assert tensors["lm_head.weight"]["alias_of"] == "transformer.wte.weight"
    assert report["source"]["architecture"] == "GPT2LMHeadModel" and report["source"]["config"]["model_type"] == "gpt2"



def test_inspect_table_names_the_architecture_and_the_tie(folders: dict[str, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    lines = cli(capsys, "inspect", folders["gpt2"]).out.splitlines()
    assert lines[0].endswith("GPT2LMHeadModel (transformers)")
    assert lines[1].startswith("config model_type=gpt2")
    (lm_head,) = [line for line in lines if line.startswith("lm_head ")]
    assert lm_head.endswith("(tied to transformer.wte.weight: counted there)")

def damage(folder: Path, tmp_path: Path, how: str) -> Path:
    broken = tmp_path / how
    shutil.copytree(folder, broken)
    index_path = broken / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shards = sorted(set(index["weight_map"].values()))
    if how == "truncated":
        data = (broken / shards[1]).read_bytes()
        (broken / shards[1]).write_bytes(data[: len(data) - 100])
    elif how == "missing":
        (broken / shards[2]).unlink()
    elif how == "overlapping":
        path = broken / shards[0]
        raw = path.read_bytes()
        size = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + size])
        names = [k for k in header if k != "__metadata__"]
        first, second = sorted(names, key=lambda k: header[k]["data_offsets"][0])[:2]
        header[second]["data_offsets"][0] = header[first]["data_offsets"][0]
        text = json.dumps(header).encode()
        text += b" " * (size - len(text)) if len(text) <= size else b""
        path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + size :])
    elif how == "two-shards":
        key = next(k for k, s in index["weight_map"].items() if s == shards[0])
        from safetensors.torch import load_file, save_file

        extra = load_file(broken / shards[1])
        extra[key] = torch.zeros(1)
        save_file(extra, str(broken / shards[1]))
    elif how == "total-size":
        index["metadata"]["total_size"] += 4
        index_path.write_text(json.dumps(index))
    return broken


@pytest.mark.parametrize(("how", "said"), [
    ("truncated", "size does not match its header"),
    ("missing", "is missing"),
    ("overlapping", "overlapping or misplaced"),
    ("two-shards", "is in shards"),
    ("total-size", "total_size"),
])
def test_damaged_shards_are_refused_in_one_line(folders: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str], how: str, said: str) -> None:
    broken = damage(folders["llama"], tmp_path, how)
    with pytest.raises(LoadError, match=said):
        Document.open(broken)
    result = cli(capsys, "inspect", broken)
    assert result.code == 2 and said in result.err and len(result.err.strip().splitlines()) == 1


def test_a_folder_export_never_touches_an_existing_folder(folders: dict[str, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from sparsegui.core.errors import ExportError
    from sparsegui.core.export import folder as folder_module

    doc = Document.open(folders["llama"])
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        doc.export(existing)
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]

    def broken(*_a: object, **_k: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(folder_module, "_verify", broken)
    with pytest.raises(ExportError, match="No space left"):
        doc.export(tmp_path / "fails")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no half-written folder, no temporary
