"""Hugging Face model folders: ``config.json``, the weights and the files that travel with them.

The weights are, in this order of preference: the sharded ``model.safetensors.index.json``, ``model.safetensors``,
the sharded ``pytorch_model.bin.index.json`` or ``pytorch_model.bin`` (pickles, loaded weights-only like any other).
Everything else in the folder (config, tokenizer, generation config, …) is copied unchanged by a folder export.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparsegui.core.errors import LoadError, SparseGUIError
from sparsegui.core.loading.paths import require_regular_file
from sparsegui.core.loading.sniff import Format, read_json, sniff
from sparsegui.core.loading.torch_files import load_torch_file

MODELOPT_STATE = "modelopt_state.pth"
"""What ModelOpt saves beside a Hugging Face folder's weights: the modes it applied (a pickle, read as data)."""
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                "pytorch_model.bin")
CONFIG = "config.json"
SHOWN_CONFIG = ("architectures", "model_type", "torch_dtype", "dtype", "tie_word_embeddings", "quantization_config",
                "sparsity_config", "auto_map")


@dataclass
class Folder:
    """A model folder: where it is, its weights file (an index or a single file) and its parsed ``config.json``."""

    path: Path
    weights: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str | None:
        names = self.config.get("architectures")
        if isinstance(names, list) and names and isinstance(names[0], str):
            return names[0]
        return None

    def weight_files(self) -> list[Path]:
        """The weights file and, for an index, every shard it names."""
        if not self.weights.name.endswith(".index.json"):
            return [self.weights]
        index = read_json(self.weights, self.weights.stat().st_size, "a shard index")
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        shards = dict.fromkeys(v for v in (weight_map or {}).values() if isinstance(v, str))
        return [self.weights, *(self.path / name for name in shards)]

    def other_files(self) -> list[Path]:
        """Files of the folder that are not weights (copied as they are by a folder export). ModelOpt's state is
        left out: it tells ModelOpt to expect its masks, and an exported folder holds the pruned weights only."""
        weights = {f.name for f in self.weight_files()} | set(WEIGHT_FILES) | {MODELOPT_STATE}
        return sorted(p for p in self.path.iterdir() if p.is_file() and p.name not in weights
                      and not p.name.endswith((".safetensors", ".bin")))

    def modelopt_note(self) -> str | None:
        """What ``modelopt_state.pth`` beside the weights says (the ModelOpt modes applied), read as data; None
        without one."""
        path = self.path / MODELOPT_STATE
        if not path.is_file():
            return None
        try:
            state = load_torch_file(require_regular_file(path, "ModelOpt state"), sniff(path), trust=False,
                                    mmap=False)
            entries = state.get("modelopt_state_dict") if isinstance(state, dict) else None
            modes = [str(e[0]) for e in entries if isinstance(e, (list, tuple)) and e] if isinstance(
                entries, (list, tuple)) else []
        except SparseGUIError as exc:
            return f"{MODELOPT_STATE}: not read ({exc}); masks, if any, come from the weights' `_weight_mask` keys"
        version = state.get("modelopt_version") if isinstance(state, dict) else None
        what = ", ".join(modes) if modes else "no modes"
        return (f"{MODELOPT_STATE}: NVIDIA ModelOpt {what}" + (f" (ModelOpt {version})" if version else "")
                + "; its masks are read from the weights' `_weight_mask` keys; a folder export leaves this file out")


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in WEIGHT_FILES)


def find_folder(path: Path) -> Folder:
    """The model folder at ``path``, or one line saying why it is not one."""
    for name in WEIGHT_FILES:
        weights = path / name
        if weights.is_file():
            require_regular_file(weights, "weights file")
            return Folder(path, weights, read_config(path))
    found = sorted(p.name for p in path.glob("*.safetensors"))[:3]
    hint = f" (it has {', '.join(found)}: open one of them as a file)" if found else ""
    raise LoadError(f"{path}: a folder without model weights: none of {', '.join(WEIGHT_FILES)}{hint}")


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` as an object ({} when the folder has none); a damaged one is one line."""
    path = folder / CONFIG
    if not path.exists():
        return {}
    require_regular_file(path, "config file")
    try:
        config = read_json(path, path.stat().st_size, "a config")
    except OSError as exc:
        raise LoadError(f"{CONFIG}: cannot read ({exc.strerror or exc})") from exc
    if not isinstance(config, dict):
        raise LoadError(f"{CONFIG}: not a JSON object")
    return config


def config_summary(config: dict[str, Any]) -> dict[str, str]:
    """The fields a user looks at first, as short text (absent fields left out)."""
    out: dict[str, str] = {}
    for key in SHOWN_CONFIG:
        if key in config:
            value = config[key]
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            out[key] = text if len(text) <= 300 else text[:297] + "..."
    sparsity = config.get("quantization_config", {})
    if isinstance(sparsity, dict) and "sparsity_config" in sparsity:
        out["sparsity_config"] = json.dumps(sparsity["sparsity_config"], separators=(",", ":"))[:300]
    return out


def load_bin_index(index_path: Path, trust: bool) -> dict[str, torch.Tensor]:
    """The tensors of a sharded ``pytorch_model.bin.index.json`` (each shard a pickle, loaded weights-only)."""
    index = read_json(index_path, index_path.stat().st_size, "a shard index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise LoadError(f"{index_path.name}: 'weight_map' is not an object of shard names")
    state: dict[str, torch.Tensor] = {}
    for shard in dict.fromkeys(weight_map.values()):
        path = index_path.parent / shard
        if "/" in shard or "\\" in shard or shard in ("", ".", ".."):
            raise LoadError(f"{index_path.name}: shard {shard!r} is outside the index's folder; refused")
        if not path.is_file():
            raise LoadError(f"{index_path.name}: shard {shard!r} is missing")
        loaded = load_torch_file(require_regular_file(path, "weights shard"), sniff(path), trust)
        if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            raise LoadError(f"{shard}: not a state_dict shard")
        state.update(loaded)
    missing = [k for k in weight_map if k not in state]
    if missing:
        raise LoadError(f"{index_path.name}: {missing[0]!r} is not in shard {weight_map[missing[0]]!r}")
    return {k: state[k] for k in weight_map}




OUTPUT_EMBEDDINGS = ("lm_head.weight", "cls.predictions.decoder.weight", "embed_out.weight", "output.weight")
INPUT_EMBEDDINGS = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight", "shared.weight",
                    "tok_embeddings.weight")
HEAD_CLASSES = ("ForCausalLM", "LMHeadModel", "ForMaskedLM", "ForConditionalGeneration", "ForPreTraining")


def config_ties(config: dict[str, Any], keys: Mapping[str, object]) -> dict[str, str]:
    """Names the config ties to a tensor the file holds once: ``{"lm_head.weight": "model.embed_tokens.weight"}`` for
    a language model with ``tie_word_embeddings`` (true by default in transformers) whose file has no output
    embedding of its own."""
    architecture = (config.get("architectures") or [""])[0] if isinstance(config.get("architectures"), list) else ""
    if not isinstance(architecture, str) or not architecture.endswith(HEAD_CLASSES):
        return {}
    if config.get("tie_word_embeddings", True) is not True:
        return {}
    if any(key.endswith(OUTPUT_EMBEDDINGS) for key in keys):
        return {}
    inputs = [key for key in keys if key.endswith(INPUT_EMBEDDINGS)]
    if len(inputs) != 1:
        return {}
    output = "cls.predictions.decoder.weight" if architecture.endswith(("ForMaskedLM", "ForPreTraining")) and \
        any(k.startswith("bert.") for k in keys) else "lm_head.weight"
    return {output: inputs[0]}


__all__ = ["Folder", "Format", "config_summary", "config_ties", "find_folder", "is_model_folder", "load_bin_index"]
