"""What a model is made of, captured once when it is opened: modules, their tensors, buffers and other hooks.

The views, the inspection and the operations read this (and a :class:`~sparsegui.core.state.ModelState`) instead of
the live ``nn.Module``: the module tree never changes after opening, only the pruning state does. A tensor shared
by several modules (tied embeddings) is one prunable tensor with several names: the first name in module order is
its canonical name, the others are its aliases.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core.axes import class_axes
from sparsegui.core.names import qualify
from sparsegui.core.state import Holder, ModuleLayout, Original, TensorState

HOOK_DICTS = {
    "forward_pre": "_forward_pre_hooks",
    "forward": "_forward_hooks",
    "backward_pre": "_backward_pre_hooks",
    "backward": "_backward_hooks",
    "state_dict_pre": "_state_dict_pre_hooks",
    "state_dict": "_state_dict_hooks",
    "load_state_dict_pre": "_load_state_dict_pre_hooks",
    "load_state_dict_post": "_load_state_dict_post_hooks",
}


@dataclass(frozen=True)
class OtherHook:
    """A hook that is not pruning: its kind (``forward_pre``, ``forward``…) and the callable's name."""

    kind: str
    name: str


@dataclass
class BufferSlot:
    name: str
    tensor: torch.Tensor | None
    persistent: bool


@dataclass
class ModuleSlot:
    """One module: its path (root ``""``), class names, its own parameters and buffers (unpruned form)."""

    path: str
    type_name: str
    types: frozenset[str]
    """What a type filter matches: the class, its bases and a rebuilt module's guessed kind."""
    inferred: bool
    children: list[str]
    params: list[str]
    """Local names of its parameters in the unpruned form, in order (shared ones included, ``None`` ones too)."""
    buffers: list[BufferSlot]
    """Its buffers in order (a ``None`` buffer has no tensor)."""
    hooks: list[OtherHook]
    requires_grad: dict[str, bool] = field(default_factory=dict)
    empty: frozenset[str] = frozenset()
    """Parameter and buffer names registered as ``None`` (e.g. ``bias`` of ``Conv2d(bias=False)``)."""

    def layout(self) -> ModuleLayout:
        return ModuleLayout(tuple(self.params), tuple(b.name for b in self.buffers))


@dataclass
class TensorSlot:
    """A prunable tensor: its canonical name, where it lives, its other names, the parameter object and the holder
    of its original data (what every state's :class:`~sparsegui.core.state.Original` reads)."""

    name: str
    module: str
    local: str
    param: nn.Parameter
    holder: Holder
    axes: tuple[str | None, ...] = ()
    """The role of each dimension (``"out"``, ``"in"``, ``"vocab"``, ``"dim"``, ``"kernel"`` or None)."""
    aliases: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.param.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.param.dtype


def _callable_name(hook: object) -> str:
    inner = getattr(hook, "hook", None)
    target = inner if callable(inner) else hook
    return getattr(target, "__qualname__", None) or type(target).__name__


def other_hooks(module: nn.Module) -> list[OtherHook]:
    found = []
    for kind, attr in HOOK_DICTS.items():
        for hook in getattr(module, attr, {}).values():
            if not isinstance(hook, prune.BasePruningMethod):
                found.append(OtherHook(kind, _callable_name(hook)))
    return found


def type_names(module: nn.Module) -> tuple[str, frozenset[str]]:
    kind = getattr(module, "kind", None)
    names = {c.__name__ for c in type(module).__mro__ if c not in (object, nn.Module)}
    if isinstance(kind, str):
        names.add(kind)
        return kind, frozenset(names)
    return type(module).__name__, frozenset(names)


class ModelStructure:
    """Modules (in ``named_modules`` order, shared modules once) and prunable tensors of an unpruned model."""

    def __init__(self, model: nn.Module) -> None:
        self.modules: dict[str, ModuleSlot] = {}
        self.tensors: dict[str, TensorSlot] = {}
        self.canonical: dict[str, str] = {}
        """Every name of a prunable tensor (canonical and aliases) → its canonical name."""
        self.slots: dict[tuple[str, str], str] = {}
        """(module path, local name) → canonical name, for every parameter of every module."""
        seen: dict[int, str] = {}
        for path, module in model.named_modules(remove_duplicate=False):
            if path in self.modules:
                continue
            type_name, types = type_names(module)
            params = list(module._parameters)
            empty = {n for n, p in module._parameters.items() if p is None}
            empty |= {n for n, b in module._buffers.items() if b is None}
            self.modules[path] = ModuleSlot(
                path=path, type_name=type_name, types=types, inferred=hasattr(module, "kind"),
                children=[qualify(path, n) for n, c in module._modules.items() if c is not None],
                params=params,
                buffers=[BufferSlot(n, b, n not in module._non_persistent_buffers_set)
                         for n, b in module._buffers.items()],
                hooks=other_hooks(module),
                requires_grad={n: bool(p.requires_grad) for n, p in module._parameters.items() if p is not None},
                empty=frozenset(empty),
            )
            for local in params:
                param = module._parameters[local]
                if param is None:
                    continue
                qualname = qualify(path, local)
                owner = seen.get(id(param))
                if owner is None:
                    seen[id(param)] = qualname
                    axes = class_axes(module, local, tuple(param.shape))
                    self.tensors[qualname] = TensorSlot(qualname, path, local, param, Holder(param), axes)
                    owner = qualname
                else:
                    self.tensors[owner].aliases.append(qualname)
                self.canonical[qualname] = owner
                self.slots[(path, local)] = owner

    def initial_states(self) -> dict[str, TensorState]:
        return {name: TensorState(Original(slot.holder)) for name, slot in self.tensors.items()}

    def module_of(self, name: str) -> ModuleSlot:
        return self.modules[self.tensors[name].module]

    def walk(self, path: str = "") -> Iterator[ModuleSlot]:
        """The module at ``path`` and every module below it, depth first in order."""
        slot = self.modules[path]
        yield slot
        for child in slot.children:
            if child in self.modules:
                yield from self.walk(child)

    def tied(self) -> list[list[str]]:
        """Each tensor known by several names: ``[canonical, *aliases]``."""
        return [[slot.name, *slot.aliases] for slot in self.tensors.values() if slot.aliases]

    @property
    def numel(self) -> int:
        return sum(slot.param.numel() for slot in self.tensors.values())
