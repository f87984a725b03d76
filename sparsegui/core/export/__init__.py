"""Exporting pruned models: clean state_dicts, state_dicts with masks, masks alone; .pt, .safetensors, .h5."""

from sparsegui.core.export.atomic import atomic_write
from sparsegui.core.export.state import clean_state_dict, masks_dict, state_dict_with_masks
from sparsegui.core.export.writers import EXTENSIONS, write_masks, write_state_dict

__all__ = [
    "EXTENSIONS",
    "atomic_write",
    "clean_state_dict",
    "masks_dict",
    "state_dict_with_masks",
    "write_masks",
    "write_state_dict",
]
