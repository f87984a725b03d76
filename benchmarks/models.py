"""GPT-2-shaped checkpoints built in code: ~125M parameters (GPT-2 small) and ~1B (wider and deeper).

The state_dict keys follow Hugging Face's GPT-2 (``transformer.h.0.attn.c_attn.weight`` …) but every projection is
an ``nn.Linear`` (weight ``[out, in]``), so plain torch and SparseGUI prune the same tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class Config:
    name: str
    layers: int
    width: int
    vocab: int = 50257
    positions: int = 1024

    @property
    def parameters(self) -> int:
        d = self.width
        per_block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
        return self.vocab * d + self.positions * d + self.layers * per_block + 2 * d


SIZES = {
    "tiny": Config("tiny", layers=2, width=64, vocab=1000, positions=64),  # for the harness's own test
    "125m": Config("125m", layers=12, width=768),
    "1b": Config("1b", layers=18, width=2048),
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
    """Save a state_dict with GPT-2-like initial values (N(0, 0.02) weights, zero biases, unit norms)."""
    path = folder / f"gpt2-{config.name}.pt"
    if path.exists():
        return path
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in build_on_meta(config).state_dict().items():
        if key.endswith("bias"):
            state[key] = torch.zeros(tensor.shape)
        elif tensor.dim() == 1:
            state[key] = torch.ones(tensor.shape)
        else:
            state[key] = torch.empty(tensor.shape).normal_(0.0, 0.02, generator=gen)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path
