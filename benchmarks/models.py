"""GPT-2-shaped checkpoints built in code: ~125M parameters (GPT-2 small) and ~1B (wider and deeper).

The state_dict keys follow Hugging Face's GPT-2 (``transformer.h.0.attn.c_attn.weight`` …) but every projection is
an ``nn.Linear`` (weight ``[out, in]``), so plain torch and SparseGUI prune the same tensors.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn


@dataclass(frozen=True)
class Config:
    name: str
    layers: int
    width: int
    vocab: int = 50257
    positions: int = 1024
    dtype: str = "float32"

    @property
    def parameters(self) -> int:
        d = self.width
        per_block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
        return self.vocab * d + self.positions * d + self.layers * per_block + 2 * d


SIZES = {
    "tiny": Config("tiny", layers=2, width=64, vocab=1000, positions=64),  # for the harness's own test
    "125m": Config("125m", layers=12, width=768),
    "1b": Config("1b", layers=18, width=2048),
    "1b-bf16": Config("1b-bf16", layers=18, width=2048, dtype="bfloat16"),
}


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(d, 3 * d)
        self.attn.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(d, 4 * d)
        self.mlp.c_proj = nn.Linear(4 * d, d)


class GPT2(nn.Module):
    """The tensors of a GPT-2 language model (no forward: the benchmark only prunes and saves)."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        d = config.width
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(config.vocab, d)
        self.transformer.wpe = nn.Embedding(config.positions, d)
        self.transformer.h = nn.ModuleList(Block(d) for _ in range(config.layers))
        self.transformer.ln_f = nn.LayerNorm(d)


def build_on_meta(config: Config) -> GPT2:
    with torch.device("meta"):
        return GPT2(config)


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """The weight matrices (Linear and Embedding), in model order: what the benchmark prunes."""
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding))]


def write_checkpoint(config: Config, folder: Path, seed: int = 0) -> Path:
    """Save a state_dict with GPT-2-like initial values (N(0, 0.02) weights, zero biases, unit norms) in the
    config's dtype."""
    path = folder / f"gpt2-{config.name}.pt"
    if path.exists():
        return path
    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, config.dtype)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in build_on_meta(config).state_dict().items():
        if key.endswith("bias"):
            state[key] = torch.zeros(tensor.shape, dtype=dtype)
        elif tensor.dim() == 1:
            state[key] = torch.ones(tensor.shape, dtype=dtype)
        else:
            state[key] = torch.empty(tensor.shape).normal_(0.0, 0.02, generator=gen).to(dtype)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


# -- Llama-shaped Hugging Face model folders -------------------------------------------------------------------------
@dataclass(frozen=True)
class LlamaConfig:
    """A Llama-shaped ``LlamaForCausalLM`` (untied ``lm_head``), written as a Hugging Face model folder in bf16."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    shard_size: int = 5 * 10**9

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Every tensor's Hugging Face key and shape, in module order."""
        d, m = self.hidden, self.intermediate
        out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (self.vocab, d))]
        for i in range(self.layers):
            p = f"model.layers.{i}."
            out += [(p + f"self_attn.{x}_proj.weight", (d, d)) for x in "qkvo"]
            out += [(p + "mlp.gate_proj.weight", (m, d)), (p + "mlp.up_proj.weight", (m, d)),
                    (p + "mlp.down_proj.weight", (d, m)),
                    (p + "input_layernorm.weight", (d,)), (p + "post_attention_layernorm.weight", (d,))]
        return [*out, ("model.norm.weight", (d,)), ("lm_head.weight", (self.vocab, d))]

    @property
    def parameters(self) -> int:
        return sum(math.prod(shape) for _, shape in self.shapes())

    def config_json(self) -> dict[str, object]:
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
            "hidden_size": self.hidden, "intermediate_size": self.intermediate, "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads, "num_key_value_heads": self.heads, "vocab_size": self.vocab,
            "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "initializer_range": 0.02, "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
            "bos_token_id": 1, "eos_token_id": 2, "use_cache": True,
        }


LLAMA_SIZES = {
    "7b": LlamaConfig("7b", layers=32, hidden=4096, intermediate=11008, vocab=32000, heads=32),
    # small enough for the harness's own tests, big enough that the embeddings take the streaming paths (≥ 65536
    # entries), sharded in three files
    "tiny-llama": LlamaConfig("tiny-llama", layers=2, hidden=64, intermediate=172, vocab=1100, heads=4,
                              shard_size=200_000),
}
GEN_CHUNK = 1 << 23
"""Entries generated and written per step (32 MB of fp32 scratch): generating a 7B folder needs little memory."""


def _write_random_bf16(handle: BinaryIO, key: str, shape: tuple[int, ...], gen: torch.Generator) -> None:
    numel = math.prod(shape)
    if len(shape) == 1:  # RMSNorm weights: ones
        handle.write(torch.ones(numel, dtype=torch.bfloat16).view(torch.uint8).numpy().tobytes())
        return
    scratch = torch.empty(min(numel, GEN_CHUNK))
    for start in range(0, numel, GEN_CHUNK):
        n = min(GEN_CHUNK, numel - start)
        part = scratch[:n].normal_(0.0, 0.02, generator=gen)
        handle.write(part.to(torch.bfloat16).view(torch.uint8).numpy().tobytes())


def write_llama_folder(config: LlamaConfig, work: Path, seed: int = 0) -> Path:
    """A Hugging Face model folder (config.json, sharded safetensors and their index) with N(0, 0.02) bf16 weights
    and unit norms, generated chunk by chunk; kept and reused when complete."""
    from sparsegui.core.export.folder import plan_shards
    from sparsegui.core.export.safetensors_out import header_bytes

    folder = work / f"llama-{config.name}"
    if (folder / "model.safetensors.index.json").is_file():
        return folder
    tmp = work / f".llama-{config.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shapes = dict(config.shapes())
    groups = plan_shards([(k, math.prod(s) * 2) for k, s in shapes.items()], config.shard_size)
    names = [f"model-{i:05d}-of-{len(groups):05d}.safetensors" for i in range(1, len(groups) + 1)]
    gen = torch.Generator().manual_seed(seed)
    for group, name in zip(groups, names, strict=True):
        header = header_bytes([(k, torch.bfloat16, shapes[k]) for k in group], {"format": "pt"})
        with (tmp / name).open("wb") as handle:
            handle.write(header)
            for key in group:
                _write_random_bf16(handle, key, shapes[key], gen)
            handle.flush()
            os.fsync(handle.fileno())
    index = {"metadata": {"total_size": sum(math.prod(s) * 2 for s in shapes.values())},
             "weight_map": {k: n for g, n in zip(groups, names, strict=True) for k in g}}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    (tmp / "config.json").write_text(json.dumps(config.config_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(folder)
    return folder
