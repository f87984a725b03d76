"""What an export writes, as tensors computed one at a time when the writer asks for them.

A clean export holds ``X = X_orig * X_mask`` for each pruned tensor (exactly what ``prune.remove`` would leave),
under the source's own key names and in the source's key order; an export with masks holds ``X_orig`` and
``X_mask`` (torch's dtype) in the place of ``X``. Unpruned tensors are the originals (shared, not copied); a
product is computed when the writer reaches it and dropped after, so writing never holds the model twice. A tied
tensor is computed once and given to each of its keys (shared storage in a ``.pt`` file); a key the source did not
have for it (a tie the config declares) is left out, as the source did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from sparsegui.core.names import qualify
from sparsegui.core.state import Baked, ModelState, Pruning
from sparsegui.core.structure import ModelStructure

Producer = Callable[[], torch.Tensor]


@dataclass(frozen=True)
class Lazy:
    """A tensor to write: what identifies it (keys of one tied tensor share it), how to compute it, its dtype and
    shape (known before it is computed)."""

    ident: str
    produce: Producer
    dtype: torch.dtype
    shape: tuple[int, ...]
    chunks: Callable[[], Iterator[torch.Tensor] | None] | None = None
    """The tensor flattened, piece by piece, when it can be computed that way (a streaming writer's way to avoid
    a full-size temporary); None: use ``produce``."""
    fill: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Computes the tensor, flattened, into a given 1-D tensor of its dtype and size (a writer's reused buffer);
    None: use ``produce``."""


class LazyTensors(Mapping[str, torch.Tensor]):
    """An ordered mapping of export keys to tensors computed on access; while :meth:`materialized` builds a dict,
    keys of one tensor share one result (a ``.pt`` export keeps tied tensors tied)."""

    def __init__(self, producers: dict[str, Lazy]) -> None:
        self._producers = producers
        self._shared: dict[str, torch.Tensor] | None = None

    def info(self, key: str) -> Lazy:
        return self._producers[key]

    def __getitem__(self, key: str) -> torch.Tensor:
        lazy = self._producers[key]
        ident, produce = lazy.ident, lazy.produce
        if self._shared is None:
            return produce()
        if ident not in self._shared:
            self._shared[ident] = produce()
        return self._shared[ident]

    def __iter__(self) -> Iterator[str]:
        return iter(self._producers)

    def __len__(self) -> int:
        return len(self._producers)

    def stream(self, key: str) -> Iterator[torch.Tensor] | None:
        """``key``'s tensor in flat pieces, or None when it has to be produced whole."""
        chunks = self._producers[key].chunks
        return None if chunks is None else chunks()

    def materialized(self) -> dict[str, torch.Tensor]:
        """Every tensor at once, ties sharing one tensor (for writers that need them all, like ``torch.save``)."""
        self._shared = {}
        try:
            return {key: self[key] for key in self}
        finally:
            self._shared = None


def _mask_buffer(pruning: Pruning) -> Producer:
    """torch's ``X_mask`` buffer (1 and 0 in its dtype), made when asked for."""
    return lambda: pruning.mask.as_dtype(pruning.mask_dtype)


def _ordered(keys: list[str], key_order: Sequence[str]) -> list[str]:
    present = set(keys)
    first = [k for k in key_order if k in present]
    placed = set(first)
    return first + [k for k in keys if k not in placed]


def _entries(structure: ModelStructure, state: ModelState, keep_masks: bool,
             source_keys: set[str]) -> dict[str, Lazy]:
    """Every state_dict key of the model in torch's module order (with masks: torch's own layout)."""
    out: dict[str, Lazy] = {}
    for path, slot in structure.modules.items():
        layout = state.layouts.get(path) or slot.layout()
        hooked = set(layout.hooks)
        for pname in layout.params:
            local = pname[: -len("_orig")] if pname.endswith("_orig") and pname[: -len("_orig")] in hooked else pname
            if local in slot.empty:
                continue
            canonical = structure.slots[(path, local)]
            ts = state.tensors[canonical]
            key = qualify(path, pname if keep_masks else local)
            if canonical != qualify(path, local) and source_keys and key not in source_keys:
                continue  # tied by the config, absent from the source: leave it out as the source did
            values = ts.values
            if keep_masks or ts.pruning is None:
                # a product made permanent by remove is computed as the writer reaches it, like a pruned one
                baked = values.fill if isinstance(values, Baked) and values.device.type == "cpu" else None
                out[key] = Lazy(f"values:{canonical}", values.tensor, values.dtype, values.shape, fill=baked)
            else:
                out[key] = Lazy(f"effective:{canonical}", ts.effective, values.dtype, values.shape,
                                ts.effective_chunks, ts.fill_effective if ts.fillable else None)
        for buffer in slot.buffers:
            tensor = buffer.tensor
            if buffer.persistent and tensor is not None and buffer.name in layout.buffers:
                out[qualify(path, buffer.name)] = Lazy(f"buffer:{path}.{buffer.name}",
                                                       lambda b=buffer: b.tensor,  # type: ignore[misc]
                                                       tensor.dtype, tuple(tensor.shape))
        if keep_masks:
            for local in layout.hooks:
                pruning = state.tensors[structure.slots[(path, local)]].pruning
                assert pruning is not None
                key = qualify(path, local + "_mask")
                out[key] = Lazy(f"mask:{key}", _mask_buffer(pruning), pruning.mask_dtype, pruning.mask.shape)
    return out


def export_tensors(structure: ModelStructure, state: ModelState, key_order: Sequence[str] = (), prefix: str = "",
                   keep_masks: bool = False) -> LazyTensors:
    """The clean state_dict (or, with ``keep_masks``, torch's ``X_orig``/``X_mask`` form) in the source's order."""
    entries = _entries(structure, state, keep_masks, set(key_order))
    if keep_masks:
        # X_orig and X_mask take the place of X in the source's order, X_orig first
        pruned = _pruned_keys(structure, state)
        groups: dict[str, list[str]] = {}
        for key in entries:
            base = key.removesuffix("_orig").removesuffix("_mask")
            groups.setdefault(base if base != key and base in pruned else key, []).append(key)
        order = [k for slot in _ordered(list(groups), key_order)
                 for k in sorted(groups[slot], key=lambda k: k.endswith("_mask"))]
    else:
        order = _ordered(list(entries), key_order)
    return LazyTensors({prefix + key: entries[key] for key in order})


def _pruned_keys(structure: ModelStructure, state: ModelState) -> set[str]:
    return {qualify(path, local) for path, slot in structure.modules.items()
            for local in (state.layouts.get(path) or slot.layout()).hooks}


def pruned_tensor_names(structure: ModelStructure, state: ModelState) -> set[str]:
    """Qualified names (as the modules hold them) of the tensors that carry a pruning hook."""
    return _pruned_keys(structure, state)


def mask_tensors(structure: ModelStructure, state: ModelState) -> LazyTensors:
    """Each pruned tensor's mask as a bool tensor, keyed by the canonical tensor name."""
    out: dict[str, Lazy] = {}
    for name in state.pruned_names():
        pruning = state.tensors[name].pruning
        assert pruning is not None
        out[name] = Lazy(f"mask:{name}", pruning.mask.bool_tensor, torch.bool, pruning.mask.shape)
    return LazyTensors(out)


def with_tool_masks(tensors: LazyTensors, structure: ModelStructure, state: ModelState, layout: str,
                    prefix: str = "") -> LazyTensors:
    """A clean export with each pruned tensor's mask (bool) under ``layout``'s key right after it (ModelOpt leaves
    out a mask of all ones, as ModelOpt does)."""
    from sparsegui.core.mask_layouts import mask_key

    masks: dict[str, Lazy] = {}
    for name in state.pruned_names():
        pruning = state.tensors[name].pruning
        assert pruning is not None
        if layout == "modelopt" and pruning.mask.zeros == 0:
            continue
        for qualname in (name, *structure.tensors[name].aliases):
            masks[prefix + qualname] = Lazy(f"mask:{name}", pruning.mask.bool_tensor, torch.bool, pruning.mask.shape)
    out: dict[str, Lazy] = {}
    for key in tensors:
        out[key] = tensors.info(key)
        if key in masks:
            out[prefix + mask_key(layout, key[len(prefix):])] = masks[key]
    return LazyTensors(out)
