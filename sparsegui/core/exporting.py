"""Exporting a document: clean or with masks, masks alone, in every format, with sparsity attributes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsegui.core.export import clean_state_dict, masks_dict, state_dict_with_masks, write_masks, write_state_dict
from sparsegui.core.export.state import pruned_tensor_names
from sparsegui.core.export.writers import format_for
from sparsegui.core.inspection import inspect_model
from sparsegui.core.progress import CancelToken, ProgressCallback, report
from sparsegui.core.pruned import method_history, pruning_hooks

if TYPE_CHECKING:
    from sparsegui.core.document import Document


def tensor_attributes(doc: Document) -> dict[str, dict[str, Any]]:
    """Per qualified tensor: zeros, sparsity and (for pruned tensors) the JSON pruning history."""
    report = inspect_model(doc.model)
    modules = doc.modules()
    attrs: dict[str, dict[str, Any]] = {}
    for info in report.modules:
        hooks = pruning_hooks(modules[info.name])
        for tensor in info.tensors:
            key = f"{info.name}.{tensor.name}" if info.name else tensor.name
            entry: dict[str, Any] = {"zeros": tensor.zeros, "sparsity": tensor.sparsity}
            if tensor.name in hooks:
                entry["history"] = json.dumps(method_history(hooks[tensor.name]))
            attrs[key] = entry
    return attrs


def export_document(
    doc: Document,
    path: str | Path,
    *,
    keep_masks: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Write the model's state_dict under the source's own key names and order (pruning made permanent unless
    ``keep_masks``); marks the history clean."""
    source = doc.source
    report(progress, 0.0, "collecting the tensors")
    # per-tensor sparsity attributes: only HDF5 stores them, and counting zeros reads every tensor
    per_tensor = tensor_attributes(doc) if format_for(Path(path)) == "hdf5" else {}
    if keep_masks:
        state = state_dict_with_masks(doc.model, source.key_order, source.prefix)
        pruned = {f"{source.prefix}{k}" for k in pruned_tensor_names(doc.model)}
        masks = {k for k in state if k.endswith("_mask") and k[: -len("_mask")] in pruned}
        attrs = {source.prefix + k + "_orig": v for k, v in per_tensor.items()}
        attrs.update({source.prefix + k: v for k, v in per_tensor.items()})
        contents = "state_dict+masks"
    else:
        state = clean_state_dict(doc.model, source.key_order, source.prefix)
        masks = set()
        attrs = {source.prefix + k: v for k, v in per_tensor.items()}
        contents = "state_dict"
    metadata = {"sparsegui_recipe": json.dumps(doc.recipe()["steps"])}
    written = write_state_dict(path, state, attrs=attrs, metadata=metadata, masks=masks, contents=contents,
                               progress=progress, cancel=cancel)
    doc.history.mark_clean()
    return written


def export_masks(doc: Document, path: str | Path, progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> Path:
    """Write every pruned tensor's mask (bool; bit-packed in HDF5), keyed by qualified tensor name."""
    report(progress, 0.0, "collecting the masks")
    return write_masks(path, masks_dict(doc.model), progress=progress, cancel=cancel)
