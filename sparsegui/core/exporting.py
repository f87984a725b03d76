"""Exporting a model's state: clean or with masks, masks alone, in every format, with sparsity attributes.

These functions take the structure, the state and where the model came from (not a document), so an export can
run in a worker on a state that no operation will change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparsegui.core.errors import ExportError
from sparsegui.core.export import export_tensors, mask_tensors, write_masks, write_state_dict
from sparsegui.core.export.folder import SHARD_SIZE, is_folder_target, write_folder
from sparsegui.core.export.state import with_tool_masks
from sparsegui.core.export.writers import format_for
from sparsegui.core.inspection import entry_record
from sparsegui.core.loading.folders import Folder
from sparsegui.core.loading.source import SourceInfo
from sparsegui.core.mask_layouts import LAYOUTS
from sparsegui.core.names import qualify
from sparsegui.core.progress import CancelToken, ProgressCallback, report
from sparsegui.core.state import ModelState
from sparsegui.core.structure import ModelStructure


def tensor_attributes(structure: ModelStructure, state: ModelState) -> dict[str, dict[str, Any]]:
    """Per qualified tensor name (every name of a tied tensor): zeros, sparsity and, when pruned, the JSON pruning
    history."""
    attrs: dict[str, dict[str, Any]] = {}
    for (path, local), canonical in structure.slots.items():
        ts = state.tensors[canonical]
        zeros = ts.zeros()
        entry: dict[str, Any] = {"zeros": zeros, "sparsity": zeros / ts.numel if ts.numel else 0.0}
        if ts.pruning is not None:
            entry["history"] = json.dumps([entry_record(e) for e in ts.pruning.methods])
        attrs[qualify(path, local)] = entry
    return attrs


def export_state(structure: ModelStructure, state: ModelState, source: SourceInfo, steps: Sequence[dict[str, Any]],
                 path: str | Path, *, keep_masks: bool = False, shard_size: int = SHARD_SIZE,
                 mask_layout: str = "torch", progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> Path:
    """Write the state_dict under the source's own key names and order (pruning made permanent unless
    ``keep_masks``), tensor by tensor where the format allows. A target without an extension is a model folder
    (sharded safetensors, index, and the source folder's other files)."""
    report(progress, 0.0, "collecting the tensors")
    if is_folder_target(path):
        if keep_masks:
            raise ExportError(f"{path}: a model folder holds the pruned weights; export the masks with them to a "
                              ".pt, .safetensors or .h5 file")
        tensors = export_tensors(structure, state, source.key_order, source.prefix)
        others = Folder(Path(source.folder), Path(source.weights or "")).other_files() if source.folder else []
        return write_folder(path, tensors, others, {"sparsegui_recipe": json.dumps(list(steps))}, shard_size,
                            progress, cancel)
    # per-tensor sparsity attributes: only HDF5 stores them, and counting zeros may read every tensor
    per_tensor = tensor_attributes(structure, state) if format_for(Path(path)) == "hdf5" else {}
    prefix = source.prefix
    if mask_layout not in LAYOUTS:
        raise ExportError(f"unknown mask layout {mask_layout!r}; choose one of: {', '.join(LAYOUTS)}")
    if keep_masks and mask_layout != "torch":  # another tool's layout: the pruned weights and bool masks
        tensors = with_tool_masks(export_tensors(structure, state, source.key_order, prefix), structure, state,
                                  mask_layout, prefix)
        return write_state_dict(path, tensors, attrs={prefix + k: v for k, v in per_tensor.items()},
                                metadata={"sparsegui_recipe": json.dumps(list(steps)), "mask_layout": mask_layout},
                                contents=f"state_dict+{mask_layout} masks", progress=progress, cancel=cancel)
    tensors = export_tensors(structure, state, source.key_order, prefix, keep_masks)
    attrs = {prefix + k: v for k, v in per_tensor.items()}
    masks: set[str] = set()
    if keep_masks:
        attrs.update({prefix + k + "_orig": v for k, v in per_tensor.items()})
        masks = {k for k in tensors if k.endswith("_mask") and k[: -len("_mask")] in attrs}
    metadata = {"sparsegui_recipe": json.dumps(list(steps))}
    return write_state_dict(path, tensors, attrs=attrs, metadata=metadata, masks=masks,
                            contents="state_dict+masks" if keep_masks else "state_dict",
                            progress=progress, cancel=cancel)


def export_masks(structure: ModelStructure, state: ModelState, path: str | Path,
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Path:
    """Write every pruned tensor's mask (bool; bit-packed in HDF5), keyed by tensor name."""
    report(progress, 0.0, "collecting the masks")
    return write_masks(path, mask_tensors(structure, state), progress=progress, cancel=cancel)
