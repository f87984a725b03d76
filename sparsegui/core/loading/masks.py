"""Reading mask files for ``custom_from_mask``: .pt, .safetensors, .h5 (SparseGUI's mask exports) or .npy/.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sparsegui.core.errors import LoadError
from sparsegui.core.loading.hdf5_files import load_hdf5
from sparsegui.core.loading.safetensors_files import load_safetensors
from sparsegui.core.loading.sniff import Format, sniff
from sparsegui.core.loading.statedicts import is_state_dict
from sparsegui.core.loading.torch_files import load_torch_file


def load_masks(path: str | Path) -> dict[str, torch.Tensor]:
    """Masks keyed by qualified tensor name; a file holding one bare tensor gives ``{"": mask}``."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"mask file {str(path)!r} does not exist")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x93NUMPY") or (head.startswith(b"PK") and path.suffix == ".npz"):
        try:
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return {"": torch.from_numpy(loaded)}
            with loaded:  # an .npz reads (and fails on) each member only when asked for it
                return {k: torch.from_numpy(loaded[k]) for k in loaded.files}
        except Exception as exc:
            raise LoadError(f"{path.name}: unreadable NumPy file ({type(exc).__name__}: {exc})") from exc
    fmt = sniff(path)
    if fmt in (Format.TORCH_ZIP, Format.TORCH_LEGACY):
        obj = load_torch_file(path, fmt, trust=False)
        if isinstance(obj, torch.Tensor):
            return {"": obj}
        if is_state_dict(obj):
            return dict(obj)
        raise LoadError(f"{path.name}: a mask file holds a tensor or a dict of tensors keyed by tensor name")
    if fmt is Format.SAFETENSORS:
        return load_safetensors(path)[0]
    if fmt is Format.HDF5:
        return load_hdf5(path)[0]
    raise LoadError(f"{path.name}: {fmt.value} is not a mask file")
