"""Facts about torch's pruning reparametrization on a module: which tensors are pruned, and their hooks.

``torch.nn.utils.prune`` turns ``module.weight`` into a parameter ``weight_orig``, a buffer ``weight_mask`` and a
forward-pre hook (a :class:`~torch.nn.utils.prune.BasePruningMethod`, or a ``PruningContainer`` once pruned twice)
that recomputes ``weight = weight_orig * weight_mask``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune


def pruning_hooks(module: nn.Module) -> dict[str, prune.BasePruningMethod]:
    """The pruning hooks of ``module`` keyed by the tensor name they reparametrize, in registration order."""
    hooks: dict[str, prune.BasePruningMethod] = {}
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name is not None:
            hooks[hook._tensor_name] = hook
    return hooks


def is_pruned(module: nn.Module, name: str) -> bool:
    return name in pruning_hooks(module)


def forward_tensor_names(module: nn.Module) -> list[str]:
    """Local names of the tensors ``module``'s forward uses that can be pruned: its parameters, with each pruned
    ``X_orig`` shown as ``X`` (the effective tensor), in the module's parameter order."""
    pruned = pruning_hooks(module)
    names: list[str] = []
    for pname in module._parameters:
        if module._parameters[pname] is None:
            continue
        if pname.endswith("_orig") and pname[: -len("_orig")] in pruned:
            names.append(pname[: -len("_orig")])
        else:
            names.append(pname)
    return names


def held_product(module: nn.Module, name: str) -> torch.Tensor | None:
    """The ``X`` a pruning hook computed as ``X_orig * X_mask`` and holds as a plain attribute, or None when there is
    no such attribute matching ``X_orig`` (shape, dtype, device).

    torch recomputes ``X`` on every forward in case ``X_orig`` was trained in place; SparseGUI never writes into a
    tensor in place, so the held ``X`` is that product already and can be shared instead of computed again.
    """
    orig = module._parameters.get(name + "_orig")
    held = module.__dict__.get(name)
    if orig is None or not isinstance(held, torch.Tensor):
        return None
    if held.shape != orig.shape or held.dtype != orig.dtype or held.device != orig.device:
        return None
    return held


def effective_tensor(module: nn.Module, name: str) -> torch.Tensor:
    """The tensor the forward uses: ``X_orig * X_mask`` for a pruned ``X`` (the one the hook holds, when it does),
    else the parameter itself."""
    if name in pruning_hooks(module):
        held = held_product(module, name)
        if held is not None:
            return held.detach()
        orig = module._parameters[name + "_orig"]
        mask = module._buffers[name + "_mask"]
        assert orig is not None and mask is not None
        return orig.detach() * mask
    tensor = getattr(module, name)
    assert isinstance(tensor, torch.Tensor)
    return tensor.detach()


def current_mask(module: nn.Module, name: str) -> torch.Tensor | None:
    """The mask buffer of a pruned tensor, or None if ``name`` is not pruned."""
    if name not in pruning_hooks(module):
        return None
    return module._buffers[name + "_mask"]


def method_record(method: prune.BasePruningMethod) -> dict[str, object]:
    """A JSON-friendly description of one pruning method object: its class and settings (amount, n, dim…)."""
    record: dict[str, object] = {"class": type(method).__name__}
    for key, value in vars(method).items():
        if key.startswith("_"):
            continue
        if isinstance(value, torch.Tensor):
            record[key] = f"tensor{list(value.shape)}"
        elif isinstance(value, (int, float, str, bool)) or value is None:
            record[key] = value
        else:
            record[key] = repr(value)
    return record


def method_history(hook: prune.BasePruningMethod) -> list[dict[str, object]]:
    """The ordered list of methods a pruning hook applied (one, or a container's sequence)."""
    if isinstance(hook, prune.PruningContainer):
        return [method_record(m) for m in hook._pruning_methods]
    return [method_record(hook)]


def masks_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each pruned tensor's mask of a torch-form ``model`` as a bool tensor, keyed by the qualified tensor name."""
    masks = {}
    for module_name, module in model.named_modules():
        for tensor in pruning_hooks(module):
            mask = module._buffers[tensor + "_mask"]
            assert mask is not None
            masks[f"{module_name}.{tensor}" if module_name else tensor] = mask.detach().ne(0).cpu()
    return masks
