"""Exporting pruned models: clean state_dicts, state_dicts with masks, masks alone; .pt, .safetensors, .h5."""

from sparsegui.core.export.atomic import atomic_write
from sparsegui.core.export.state import LazyTensors, export_tensors, mask_tensors
from sparsegui.core.export.writers import EXTENSIONS, write_masks, write_state_dict
from sparsegui.core.pruned import masks_dict

__all__ = [
    "EXTENSIONS",
    "LazyTensors",
    "atomic_write",
    "export_tensors",
    "mask_tensors",
    "masks_dict",
    "write_masks",
    "write_state_dict",
]
