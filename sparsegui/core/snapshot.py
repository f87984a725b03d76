"""Exact snapshots of the pruning state of modules, for undo and redo.

A snapshot holds *references*, not copies: ``torch.nn.utils.prune`` never writes into existing tensors — it
registers new masks, replaces attributes and, in ``remove``, swaps a parameter's ``.data`` — so keeping the old
objects (and each parameter's old ``.data``) restores the previous state bit for bit at no memory cost.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune


@dataclass
class ModuleState:
    module: nn.Module
    parameters: dict[str, nn.Parameter | None]
    param_data: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor | None]
    non_persistent: set[str]
    tensor_attrs: dict[str, torch.Tensor]
    pre_hooks: OrderedDict[int, Any]
    pre_hooks_with_kwargs: dict[int, bool]
    pre_hooks_always_called: dict[int, bool]
    containers: list[tuple[prune.PruningContainer, tuple[prune.BasePruningMethod, ...]]]


def capture_module(module: nn.Module) -> ModuleState:
    hooks = OrderedDict(module._forward_pre_hooks)
    return ModuleState(
        module=module,
        parameters=dict(module._parameters),
        param_data={k: p.data for k, p in module._parameters.items() if p is not None},
        buffers=dict(module._buffers),
        non_persistent=set(module._non_persistent_buffers_set),
        tensor_attrs={k: v for k, v in vars(module).items() if isinstance(v, torch.Tensor)},
        pre_hooks=hooks,
        pre_hooks_with_kwargs=dict(module._forward_pre_hooks_with_kwargs),
        pre_hooks_always_called=dict(getattr(module, "_forward_pre_hooks_always_called", {})),
        containers=[(h, tuple(h._pruning_methods)) for h in hooks.values() if isinstance(h, prune.PruningContainer)],
    )


def _on(tensor: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    return tensor if device is None or tensor.device == device else tensor.to(device)


def restore_module(state: ModuleState, device: torch.device | None = None) -> None:
    """Put ``state`` back; tensors are moved to ``device`` if the model moved since the snapshot."""
    module = state.module
    for name, data in state.param_data.items():
        param = state.parameters[name]
        assert param is not None
        param.data = _on(data, device)
    module._parameters.clear()
    module._parameters.update(state.parameters)
    module._buffers.clear()
    module._buffers.update({k: None if v is None else _on(v, device) for k, v in state.buffers.items()})
    module._non_persistent_buffers_set.clear()
    module._non_persistent_buffers_set.update(state.non_persistent)
    for key in [k for k, v in vars(module).items() if isinstance(v, torch.Tensor)]:
        del module.__dict__[key]
    for key, value in state.tensor_attrs.items():
        module.__dict__[key] = _on(value, device)
    module._forward_pre_hooks.clear()
    module._forward_pre_hooks.update(state.pre_hooks)
    module._forward_pre_hooks_with_kwargs.clear()
    module._forward_pre_hooks_with_kwargs.update(state.pre_hooks_with_kwargs)
    always = getattr(module, "_forward_pre_hooks_always_called", None)
    if always is not None:
        always.clear()
        always.update(state.pre_hooks_always_called)
    for container, methods in state.containers:
        container._pruning_methods = methods


class Snapshot:
    """The pruning state of a set of modules at one moment."""

    def __init__(self, modules: Iterable[nn.Module]) -> None:
        unique = list({id(m): m for m in modules}.values())
        self.states = [capture_module(m) for m in unique]

    def restore(self, device: torch.device | None = None) -> None:
        for state in self.states:
            restore_module(state, device)
