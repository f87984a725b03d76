"""Best guesses of a module's kind from its tensors, for modules rebuilt from a bare state_dict."""

from __future__ import annotations

from collections.abc import Mapping

import torch

BUFFER_NAMES = frozenset({"running_mean", "running_var", "num_batches_tracked"})


def is_buffer_name(name: str, tensor: torch.Tensor) -> bool:
    """Whether a state_dict entry is most likely a buffer rather than a trainable parameter."""
    return name in BUFFER_NAMES or not (tensor.is_floating_point() or tensor.is_complex())


def guess_kind(qualname: str, tensors: Mapping[str, torch.Tensor], has_children: bool) -> str:
    """Guess a torch.nn class name from a module's own tensors (e.g. a 4-D weight and 1-D bias → Conv2d)."""
    weight = tensors.get("weight")
    leaf = qualname.rsplit(".", 1)[-1].lower()
    if "in_proj_weight" in tensors:
        return "MultiheadAttention"
    if weight is None:
        return "Container" if has_children and not tensors else "Module"
    if "running_mean" in tensors or "running_var" in tensors:
        return "BatchNorm"
    if weight.dim() == 5:
        return "Conv3d"
    if weight.dim() == 4:
        return "Conv2d"
    if weight.dim() == 3:
        return "Conv1d"
    if weight.dim() == 2:
        if "bias" not in tensors and any(key in leaf for key in ("emb", "wte", "wpe", "token", "lookup")):
            return "Embedding"
        return "Linear"
    if weight.dim() == 1:
        if "norm" in leaf or "ln" in leaf or "bias" in tensors:
            return "LayerNorm" if "bias" in tensors else "RMSNorm"
        return "Module"
    return "Module"
