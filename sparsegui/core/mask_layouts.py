"""Masks as other tools store them in a checkpoint, read as pruning and written back.

- ``torch`` — ``X_orig`` and ``X_mask`` (the mask in the weight's dtype); handled by the state_dict loader.
- ``modelopt`` — NVIDIA ModelOpt: ``<module>._weight_mask`` (bool), absent for a tensor whose mask is all ones.
- ``asp`` — NVIDIA apex ASP: ``<module>.__weight_mma_mask`` (bool); the weights are zeroed too.
- ``llm-compressor`` — ``<module>.mask`` (bool, the weight's shape), when saved with masks.

A mask read this way becomes ``custom_from_mask`` pruning of the weight it belongs to: visible, undoable and
exported like any other. On export the weight is written pruned (``X_orig * mask``, as those tools hold it) and the
mask under the layout's key, right after it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

LAYOUTS = ("torch", "modelopt", "asp", "llm-compressor")
_SUFFIXES = {"modelopt": ("._", "_mask"), "asp": (".__", "_mma_mask")}


def mask_key(layout: str, qualname: str) -> str:
    """Where ``layout`` keeps the mask of tensor ``qualname`` (``fc1.weight`` → ``fc1._weight_mask``)."""
    module, _, local = qualname.rpartition(".")
    prefix = f"{module}." if module else ""
    if layout == "modelopt":
        return f"{prefix}_{local}_mask"
    if layout == "asp":
        return f"{prefix}__{local}_mma_mask"
    if layout == "llm-compressor":
        return f"{prefix}mask"
    raise ValueError(f"unknown mask layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")


def _target(layout: str, key: str, state: Mapping[str, torch.Tensor]) -> str | None:
    """The tensor a mask key of ``layout`` belongs to, when the state holds it with the same shape."""
    module, _, last = key.rpartition(".")
    prefix = f"{module}." if module else ""
    if layout == "llm-compressor":
        target = f"{prefix}weight" if last == "mask" else None
    else:
        start, end = _SUFFIXES[layout][0][1:], _SUFFIXES[layout][1]
        target = f"{prefix}{last[len(start):-len(end)]}" if last.startswith(start) and last.endswith(end) and \
            len(last) > len(start) + len(end) else None
    if target is None or target not in state:
        return None
    mask, weight = state[key], state[target]
    if tuple(mask.shape) != tuple(weight.shape) or (layout == "llm-compressor" and mask.dtype != torch.bool):
        return None
    return target


def split_tool_masks(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor],
                                                                   str | None]:
    """Take other tools' masks out of a state_dict: (the state without them, masks keyed by the tensor they prune,
    the layout found or None). One layout per checkpoint: the first that matches any key."""
    for layout in ("modelopt", "asp", "llm-compressor"):
        masks = {}
        for key in state:
            target = _target(layout, key, state)
            if target is not None:
                masks[target] = key
        if masks:
            clean = {k: v for k, v in state.items() if k not in set(masks.values())}
            return clean, {target: state[key] for target, key in masks.items()}, layout
    return dict(state), {}, None
