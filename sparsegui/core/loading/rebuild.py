"""Rebuild a module tree from dotted state_dict keys when no architecture code is at hand.

Each key prefix becomes an :class:`InferredModule` holding its own tensors, so ``torch.nn.utils.prune`` works on it
unchanged; a best guess of each module's kind (``Conv2d``, ``Linear``…) is kept for display and type filters.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core.axes import CONV1D_NAMES, inferred_axes
from sparsegui.core.errors import LoadError
from sparsegui.core.kinds import guess_kind, is_buffer_name


class InferredModule(nn.Module):
    """A module rebuilt from a state_dict: it holds tensors but has no forward (its code is unknown)."""

    def __init__(self, kind: str = "Module") -> None:
        super().__init__()
        self.kind = kind
        self.axes: dict[str, tuple[str | None, ...]] = {}

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise NotImplementedError(
            "this model was rebuilt from a state_dict and has no forward; open it with an architecture (--arch)"
        )

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


def _split_key(key: str) -> tuple[str, str]:
    module_path, _, name = key.rpartition(".")
    if not name or (module_path and any(part == "" for part in module_path.split("."))):
        raise LoadError(f"state_dict key {key!r} is not a dotted module path")
    return module_path, name


def _identity(tensor: torch.Tensor) -> tuple[object, ...]:
    """Tensors with the same identity are one tensor saved under two names (shared storage: a tie)."""
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(),
            tensor.dtype, tensor.device)


def rebuild_model(state: Mapping[str, torch.Tensor], filename: str, model_type: str | None = None,
                  ties: Mapping[str, str] | None = None) -> nn.Module:
    """Build an :class:`InferredModule` tree holding every tensor of ``state`` at its dotted key.

    Keys whose tensors share storage get one parameter object (a tie); ``ties`` adds names for tensors the file
    holds once but the model uses twice (``{"lm_head.weight": "model.embed_tokens.weight"}`` when the config ties
    the embeddings). ``model_type`` (from a config) tells which convention the weights follow (see
    :mod:`sparsegui.core.axes`)."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        module_path, name = _split_key(key)
        groups.setdefault(module_path, {})[name] = tensor
    for alias, target in (ties or {}).items():
        if alias not in state and target in state:
            module_path, name = _split_key(alias)
            groups.setdefault(module_path, {})[name] = state[target]
    root = InferredModule()
    modules: dict[str, nn.Module] = {"": root}

    def module_at(path: str) -> nn.Module:
        if path in modules:
            return modules[path]
        parent_path, _, leaf = path.rpartition(".")
        parent = module_at(parent_path)
        child = InferredModule()
        try:
            parent.add_module(leaf, child)
        except KeyError as exc:
            raise LoadError(f"{filename}: key prefix {path!r} is both a tensor and a module") from exc
        modules[path] = child
        return child

    shared: dict[tuple[object, ...], nn.Parameter] = {}
    for path, tensors in groups.items():
        module = module_at(path)
        for name, tensor in tensors.items():
            try:
                if is_buffer_name(name, tensor):
                    module.register_buffer(name, tensor)
                else:
                    ident = _identity(tensor)
                    if ident not in shared:
                        shared[ident] = nn.Parameter(tensor, requires_grad=False)
                    module.register_parameter(name, shared[ident])
            except (KeyError, TypeError) as exc:
                raise LoadError(f"{filename}: cannot hold tensor {path + '.' if path else ''}{name}: {exc}") from exc
    for path, module in modules.items():
        assert isinstance(module, InferredModule)
        own = groups.get(path, {})
        kind = guess_kind(path, own, has_children=bool(module._modules))
        weight = own.get("weight")
        if model_type == "gpt2" and weight is not None and weight.dim() == 2 and \
                path.rpartition(".")[2] in CONV1D_NAMES:
            kind = "Conv1D"
        module.kind = kind
        bias = own.get("bias")
        module.axes = {name: inferred_axes(path, name, tuple(t.shape), kind, None if bias is None else bias.numel(),
                                           model_type) for name, t in own.items()}
    return root


def apply_saved_masks(model: nn.Module, masks: Mapping[str, torch.Tensor], filename: str) -> None:
    """Re-create torch's pruning reparametrization for masks saved next to ``X_orig`` (via ``custom_from_mask``)."""
    for key, mask in masks.items():
        module_path, name = _split_key(key)
        try:
            module = model.get_submodule(module_path)
        except AttributeError as exc:
            raise LoadError(f"{filename}: mask {key}_mask has no module {module_path!r}") from exc
        target = getattr(module, name, None)
        if not isinstance(target, torch.Tensor):
            raise LoadError(f"{filename}: mask {key}_mask has no tensor {key}")
        if tuple(mask.shape) != tuple(target.shape):
            raise LoadError(
                f"{filename}: mask {key}_mask has shape {list(mask.shape)} but {key} has {list(target.shape)}"
            )
        try:
            prune.custom_from_mask(module, name, mask.to(device=target.device))
        except Exception as exc:  # e.g. an integer X_orig (held as a buffer) or a mask torch cannot multiply
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LoadError(f"{filename}: cannot apply mask {key}_mask to {key} ({detail})") from exc
