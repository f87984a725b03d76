"""The Qt-free engine of SparseGUI: loading, inspection, pruning, history, export and recipes.

Nothing in this package may import Qt; ``tests/test_core_no_qt.py`` enforces it. The names below are imported on
first use, so that importing a light module of the package (``sparsegui.core.errors``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparsegui.core.document import Document
    from sparsegui.core.errors import (
        Cancelled,
        DeviceError,
        ExportError,
        LoadError,
        PruneError,
        RecipeError,
        SparseGUIError,
        TrustRequired,
    )
    from sparsegui.core.loading import LoadOptions, load_model

_WHERE = {
    "Document": "sparsegui.core.document",
    "LoadOptions": "sparsegui.core.loading",
    "load_model": "sparsegui.core.loading",
    **{name: "sparsegui.core.errors" for name in ("Cancelled", "DeviceError", "ExportError", "LoadError",
                                                  "PruneError", "RecipeError", "SparseGUIError", "TrustRequired")},
}

__all__ = ["Cancelled", "DeviceError", "Document", "ExportError", "LoadError", "LoadOptions", "PruneError",
           "RecipeError", "SparseGUIError", "TrustRequired", "load_model"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sparsegui.core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
