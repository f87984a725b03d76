"""The rows of the module tree: a :class:`Node` per module, tensor, raw parameter, mask, buffer or hook, and how the
rows under a node are read from the model (only when a view asks for them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from sparsegui.core.inspection import HOOK_DICTS, module_hooks
from sparsegui.core.pruned import forward_tensor_names, pruning_hooks
from sparsegui.gui.session import Selection
from sparsegui.gui.tree_text import qualify


def has_hooks(module: nn.Module) -> bool:
    return any(getattr(module, attr, None) for attr in HOOK_DICTS.values())


class Node:
    """One row: ``kind`` and ``name`` as in :class:`Selection`; ``key`` identifies it among its siblings."""

    __slots__ = ("cache", "children", "index", "key", "kind", "local", "module", "name", "parent", "pruned", "row")

    def __init__(self, kind: str, name: str, local: str, module: nn.Module, key: tuple[Any, ...],
                 *, pruned: bool = False, index: int = 0) -> None:
        self.kind, self.name, self.local, self.module, self.key = kind, name, local, module, key
        self.pruned, self.index = pruned, index
        self.parent: Node | None = None
        self.row = 0
        self.children: list[Node] | None = None
        self.cache: dict[str, Any] = {}

    @property
    def module_path(self) -> str:
        return Selection(self.kind, self.name).module_name

    @property
    def selection(self) -> Selection:
        return Selection(self.kind, self.name, self.index)

    def tensor(self) -> Any:
        return getattr(self.module, self.local) if self.kind != "hook" else None


def adopt(parent: Node, children: list[Node]) -> list[Node]:
    for row, child in enumerate(children):
        child.parent, child.row = parent, row
    return children


def make_children(node: Node, new: Callable[..., Node]) -> list[Node]:
    """The rows under ``node`` as the model holds it now (``new`` makes each :class:`Node`)."""
    if node.kind == "root":
        model = node.module
        return [new("module", "", type(model).__name__, model, ("module", "", id(model)))]
    if node.kind == "tensor":
        if not node.pruned:
            return []
        stem = node.name
        return [new("parameter", stem + "_orig", node.local + "_orig", node.module, ("orig",)),
                new("buffer", stem + "_mask", node.local + "_mask", node.module, ("mask",))]
    if node.kind != "module":
        return []
    module, path = node.module, node.name
    rows = [new("module", qualify(path, name), name, child, ("module", name, id(child)))
            for name, child in module._modules.items() if child is not None]
    pruned = pruning_hooks(module)
    # every parameter is a forward tensor, or the X_orig of a pruned X (shown under X)
    rows += [new("tensor", qualify(path, t), t, module, ("tensor", t), pruned=t in pruned)
             for t in forward_tensor_names(module)]
    masks = {t + "_mask" for t in pruned}
    rows += [new("buffer", qualify(path, b), b, module, ("buffer", b))
             for b, value in module._buffers.items() if value is not None and b not in masks]
    rows += [new("hook", path, "", module, ("hook", i), index=i) for i in range(len(module_hooks(module)))]
    return rows


def has_children(node: Node) -> bool:
    """Whether ``node`` has rows below it, answered without building them."""
    if node.children is not None:
        return bool(node.children)
    if node.kind == "tensor":
        return node.pruned
    if node.kind != "module":
        return node.kind == "root"
    module = node.module
    return (any(m is not None for m in module._modules.values())
            or any(p is not None for p in module._parameters.values())
            or any(b is not None for b in module._buffers.values()) or has_hooks(module))
