"""Artwork shipped inside the package (so an installed wheel or a frozen app finds it): the application icon and the
toolbar icons, hand-written SVG. No Qt here: ``sparsegui.gui.help`` turns them into icons."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

APP_ICON = "sparsegui.svg"
ACTION_ICONS = ("open", "export", "undo", "redo", "prune", "remove")


def resource_path(name: str) -> Path:
    """The file ``name`` of this folder on disk (package data is installed as plain files)."""
    path = Path(str(files(__name__) / name))
    if not path.is_file():
        raise FileNotFoundError(f"no packaged resource {name!r} in {path.parent}")
    return path
