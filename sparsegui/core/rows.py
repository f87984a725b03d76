"""The rows a module tree shows, read from a document's structure and a state (never from live modules).

Under a module: its submodules, its forward tensors (a pruned ``X`` with ``X_orig`` and ``X_mask`` below it), its
other buffers and its hooks — in the order torch holds them. Rows are plain values: a view may build them from any
state, in any thread, and compare them by :attr:`Row.key` to update in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparsegui.core.inspection import HookInfo, module_hook_infos
from sparsegui.core.names import qualify
from sparsegui.core.state import ModelState, scan
from sparsegui.core.stats import Count, Totals
from sparsegui.core.structure import ModelStructure

TENSOR_KINDS = ("tensor", "parameter", "buffer")


@dataclass(frozen=True)
class Row:
    """One row: ``kind`` is module, tensor, parameter (``X_orig``), buffer or hook; ``name`` the qualified name
    (a module's path, or for a hook its module's path); ``key`` identifies it among its siblings."""

    kind: str
    name: str
    local: str
    key: tuple[Any, ...]
    type_text: str = ""
    shape: tuple[int, ...] | None = None
    dtype: str = ""
    pruned: bool = False
    tensor: str | None = None
    """The canonical name of the tensor the row stands for (tensor, ``X_orig`` and ``X_mask`` rows)."""
    alias_of: str | None = None
    hook: HookInfo | None = None
    index: int = 0
    children: bool = False

    @property
    def module_path(self) -> str:
        return self.name if self.kind in ("module", "hook") else self.name.rpartition(".")[0]


def _dtype(dtype: object) -> str:
    return str(dtype).removeprefix("torch.")


def root_row(structure: ModelStructure) -> Row:
    slot = structure.modules[""]
    return Row("module", "", slot.type_name, ("module", ""), slot.type_name, children=True)


def module_row(structure: ModelStructure, path: str) -> Row:
    slot = structure.modules[path]
    return Row("module", path, path.rpartition(".")[2], ("module", path.rpartition(".")[2]), slot.type_name,
               children=True)


def child_rows(structure: ModelStructure, state: ModelState, row: Row) -> list[Row]:
    """The rows under ``row`` in ``state``."""
    if row.kind == "tensor" and row.pruned and row.tensor is not None:
        pruning = state.tensors[row.tensor].pruning
        values = state.tensors[row.tensor].values
        if pruning is None:
            return []
        return [Row("parameter", row.name + "_orig", row.local + "_orig", ("orig",), "parameter (raw)",
                    values.shape, _dtype(values.dtype), tensor=row.tensor),
                Row("buffer", row.name + "_mask", row.local + "_mask", ("mask",), "buffer (mask)",
                    pruning.mask.shape, _dtype(pruning.mask_dtype), tensor=row.tensor)]
    if row.kind != "module":
        return []
    path = row.name
    slot = structure.modules[path]
    layout = state.layouts.get(path) or slot.layout()
    rows = [module_row(structure, child) for child in slot.children if child in structure.modules]
    hooked = set(layout.hooks)
    for local in layout.forward_names(slot.empty):
        canonical = structure.slots[(path, local)]
        ts = state.tensors[canonical]
        qualname = qualify(path, local)
        alias = canonical if canonical != qualname else None
        pruned = local in hooked
        text = "tensor, pruned" if pruned else "tensor"
        if alias is not None:
            text = f"tensor, tied to {alias}" + (" (pruned)" if ts.pruned else "")
        rows.append(Row("tensor", qualname, local, ("tensor", local), text, ts.values.shape, _dtype(ts.values.dtype),
                        pruned, canonical, alias, children=pruned))
    for buffer in slot.buffers:
        if buffer.tensor is None or buffer.name not in layout.buffers:
            continue
        text = "buffer" if buffer.persistent else "buffer, non-persistent"
        rows.append(Row("buffer", qualify(path, buffer.name), buffer.name, ("buffer", buffer.name), text,
                        tuple(buffer.tensor.shape), _dtype(buffer.tensor.dtype)))
    prunings = {local: state.tensors[structure.slots[(path, local)]].pruning for local in layout.hooks}
    hooks = module_hook_infos(slot, {k: v for k, v in prunings.items() if v is not None}, layout.hooks)
    rows += [Row("hook", path, "", ("hook", i), "hook", hook=hook, index=i) for i, hook in enumerate(hooks)]
    return rows


def module_hooks_of(structure: ModelStructure, state: ModelState, path: str) -> list[HookInfo]:
    """Every hook of the module at ``path`` as torch lists them (pruning hooks decoded)."""
    return [row.hook for row in child_rows(structure, state, module_row(structure, path)) if row.hook is not None]


def row_count(row: Row, totals: Totals) -> Count | None:
    """The elements and zeros a row shows (None: no sparsity for this kind of row)."""
    if row.kind == "module":
        return totals.module(row.name)
    if row.tensor is None:
        return None
    ts = totals.state.tensors[row.tensor]
    if row.kind == "tensor":
        return totals.tensor(row.tensor)
    if row.key == ("orig",):
        known = ts.values.scanned
        return Count(ts.numel, None if known is None else known.zeros)
    if row.key == ("mask",) and ts.pruning is not None:
        return Count(ts.numel, ts.pruning.mask.zeros)
    return None


def row_norm_removed(row: Row, totals: Totals) -> float | None:
    """The norm removed a row shows: a module's (its subtree as one tensor) or a forward tensor's; None for other
    rows and while not measured."""
    if row.kind == "module":
        return totals.module_norm_removed(row.name)
    if row.kind == "tensor" and row.tensor is not None:
        return totals.norm_removed(row.tensor)
    return None


BUFFER_COUNT_LIMIT = 1 << 22


def buffer_count(structure: ModelStructure, path: str, local: str) -> Count | None:
    """A plain buffer's elements and zeros (counted now: buffers are small; None for a big one)."""
    buffer = next((b for b in structure.modules[path].buffers if b.name == local), None)
    if buffer is None or buffer.tensor is None:
        return None
    numel = buffer.tensor.numel()
    return Count(numel, scan(buffer.tensor).zeros if numel <= BUFFER_COUNT_LIMIT else None)
