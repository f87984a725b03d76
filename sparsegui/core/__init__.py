"""The Qt-free engine of SparseGUI: loading, inspection, pruning, history, export and recipes.

Nothing in this package may import Qt; ``tests/test_core_no_qt.py`` enforces it.
"""

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

__all__ = [
    "Cancelled",
    "DeviceError",
    "Document",
    "ExportError",
    "LoadError",
    "LoadOptions",
    "PruneError",
    "RecipeError",
    "SparseGUIError",
    "TrustRequired",
    "load_model",
]
