"""Which axis of a weight is which: output or input features, vocabulary, embedding dimension, kernel.

``nn.Linear`` stores ``weight`` as (out, in), GPT-2's ``Conv1D`` as (in, out), ``nn.Embedding`` as (vocab, dim),
convolutions as (out, in, k…) and transposed ones as (in, out, k…). With the real classes the class says it; for a
tree rebuilt from keys, the rebuild records what the config's ``model_type`` and the tensors themselves show (a bias
as long as one axis and not the other names that axis "out"), and otherwise nothing — shown as "axis 0", never
guessed wrong. A role is ``"out"``, ``"in"``, ``"vocab"``, ``"dim"``, ``"kernel"`` or None (unknown).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

Axes = tuple[str | None, ...]

CONV1D_NAMES = frozenset({"c_attn", "c_proj", "c_fc", "q_attn"})
"""GPT-2's ``Conv1D`` layers (``model_type`` gpt2): weight (in, out)."""
LINEAR_MODEL_TYPES = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma",
                                "gemma2", "gemma3", "phi", "phi3", "bert", "roberta", "distilbert", "t5", "opt",
                                "gpt_neox", "gptj", "falcon", "bloom", "olmo", "olmo2", "stablelm", "starcoder2",
                                "deepseek_v2", "deepseek_v3", "granite", "cohere", "gpt_bigcode", "mpt", "bart"})
"""Model types whose 2-D projection weights are all ``nn.Linear`` (out, in)."""


def unknown(shape: Sequence[int]) -> Axes:
    return (None,) * len(shape)


def class_axes(module: nn.Module, local: str, shape: Sequence[int]) -> Axes:
    """The axes of parameter ``local`` of a module whose class is known."""
    ndim = len(shape)
    name = type(module).__name__
    recorded = getattr(module, "axes", None)
    if isinstance(recorded, dict) and local in recorded:
        return tuple(recorded[local])
    if local == "bias" and ndim == 1:
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or name == "Conv1D":
            return ("out",)
        return ("dim",) if _is_norm(module) else unknown(shape)
    if local != "weight":
        return unknown(shape)
    if ndim == 1 and _is_norm(module):
        return ("dim",)
    if isinstance(module, nn.Linear) and ndim == 2:
        return ("out", "in")
    if name == "Conv1D" and ndim == 2:
        return ("in", "out")
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and ndim == 2:
        return ("vocab", "dim")
    if isinstance(module, nn.modules.conv._ConvTransposeNd) and ndim >= 3:
        return ("in", "out", *("kernel",) * (ndim - 2))
    if isinstance(module, nn.modules.conv._ConvNd) and ndim >= 3:
        return ("out", "in", *("kernel",) * (ndim - 2))
    return unknown(shape)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)) or \
        "norm" in type(module).__name__.lower()


def inferred_axes(path: str, local: str, shape: Sequence[int], kind: str, bias: int | None,
                  model_type: str | None) -> Axes:
    """The axes of a tensor of a rebuilt module of guessed ``kind`` (``bias``: its module's bias length, if any)."""
    ndim = len(shape)
    leaf = path.rpartition(".")[2]
    if local == "bias" and ndim == 1:
        return ("out",) if kind in ("Linear", "Conv1D") or kind.startswith("Conv") else \
            ("dim",) if "Norm" in kind else unknown(shape)
    if local != "weight":
        return unknown(shape)
    if ndim == 1 and "Norm" in kind:
        return ("dim",)
    if kind == "Embedding" and ndim == 2:
        return ("vocab", "dim")
    if kind.startswith("Conv") and kind != "Conv1D" and ndim >= 3:
        return ("out", "in", *("kernel",) * (ndim - 2))
    if ndim != 2:
        return unknown(shape)
    if model_type == "gpt2" and leaf in CONV1D_NAMES:
        return ("in", "out")
    if model_type in LINEAR_MODEL_TYPES:
        return ("out", "in")
    if bias is not None and shape[0] != shape[1]:
        if bias == shape[0]:
            return ("out", "in")
        if bias == shape[1]:
            return ("in", "out")
    return unknown(shape)


def axis_name(axes: Axes, index: int) -> str:
    """``"output"``, ``"input"``… for axis ``index`` (``"axis 1"`` when unknown)."""
    role = axes[index] if index < len(axes) else None
    words = {"out": "output", "in": "input", "vocab": "vocabulary", "dim": "embedding dim", "kernel": "kernel"}
    return words.get(role or "", f"axis {index}")


def dim_meaning(axes: Axes, dim: int) -> str | None:
    """What pruning along ``dim`` removes, in words (``"input features"``), or None when unknown."""
    if not -len(axes) <= dim < len(axes):
        return None
    role = axes[dim]
    return {"out": "output features", "in": "input features", "vocab": "vocabulary entries",
            "dim": "embedding dimensions", "kernel": "kernel positions"}.get(role or "")
