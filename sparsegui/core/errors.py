"""The errors SparseGUI reports to people: each carries a one-line message that names the bad value."""

from __future__ import annotations


class SparseGUIError(Exception):
    """Base class: an error caused by input (a file, a setting, a recipe), shown to the user as one line."""


class LoadError(SparseGUIError):
    """A file could not be opened as a model."""


class TrustRequired(LoadError):
    """The file can only be opened by running code from it; it needs an explicit trust step."""

    def __init__(self, message: str, wanted_imports: list[str]) -> None:
        super().__init__(message)
        self.wanted_imports = wanted_imports


class PruneError(SparseGUIError):
    """A pruning operation was refused before anything changed (or was rolled back)."""


class RecipeError(SparseGUIError):
    """A recipe is malformed or cannot be replayed on this model."""


class ExportError(SparseGUIError):
    """Writing a file failed; any existing file at the target is untouched."""


class DeviceError(SparseGUIError):
    """A device does not exist or the model cannot move there."""


class Cancelled(SparseGUIError):
    """The user cancelled a long job; the model is as it was before the job."""
