"""Building the dictionaries to export, without copying the model.

A clean export holds ``X = X_orig * X_mask`` for each pruned tensor (exactly what ``prune.remove`` would leave)
under the source's own key names and in the source's key order; unpruned tensors are shared, not copied.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparsegui.core.pruned import effective_tensor, pruning_hooks


def pruned_tensor_names(model: nn.Module) -> set[str]:
    """Qualified names of the tensors that carry a pruning hook."""
    return set(_pruned_tensors(model))


def _pruned_tensors(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    found = {}
    for module_name, module in model.named_modules():
        for tensor in pruning_hooks(module):
            found[f"{module_name}.{tensor}" if module_name else tensor] = (module, tensor)
    return found


def _ordered(state: dict[str, torch.Tensor], key_order: Sequence[str], prefix: str) -> dict[str, torch.Tensor]:
    order = [k for k in key_order if k in state]
    rest = [k for k in state if k not in set(order)]
    return {prefix + k: state[k] for k in order + rest}


def clean_state_dict(model: nn.Module, key_order: Sequence[str] = (), prefix: str = "") -> dict[str, torch.Tensor]:
    """The state_dict with pruning made permanent (on the fly, not on the model), in the source's key order."""
    raw = model.state_dict(keep_vars=False)
    pruned = _pruned_tensors(model)
    clean: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        if key.endswith("_orig") and key[: -len("_orig")] in pruned:
            base = key[: -len("_orig")]
            clean[base] = effective_tensor(*pruned[base])  # what prune.remove would leave, shared, not copied
        elif key.endswith("_mask") and key[: -len("_mask")] in pruned:
            continue
        else:
            clean[key] = tensor
    return _ordered(clean, key_order, prefix)


def state_dict_with_masks(
    model: nn.Module, key_order: Sequence[str] = (), prefix: str = ""
) -> dict[str, torch.Tensor]:
    """The state_dict as the tutorial shows it while pruned: ``X_orig`` and ``X_mask`` in the place of ``X``."""
    raw = model.state_dict(keep_vars=False)
    pruned = pruned_tensor_names(model)
    grouped: dict[str, torch.Tensor] = {}
    position: dict[str, list[str]] = {}
    for key in raw:
        base = key[: -len("_orig")] if key.endswith("_orig") else key[: -len("_mask")] if key.endswith("_mask") else key
        slot = base if base in pruned else key
        position.setdefault(slot, []).append(key)
    order = [k for k in key_order if k in position] + [k for k in position if k not in set(key_order)]
    for slot in order:
        for key in sorted(position[slot], key=lambda k: k.endswith("_mask")):
            grouped[prefix + key] = raw[key]
    return grouped


def masks_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each pruned tensor's mask as a bool tensor, keyed by the qualified tensor name."""
    masks = {}
    for module_name, module in model.named_modules():
        for tensor in pruning_hooks(module):
            mask = module._buffers[tensor + "_mask"]
            assert mask is not None
            masks[f"{module_name}.{tensor}" if module_name else tensor] = mask.detach().ne(0).cpu()
    return masks
