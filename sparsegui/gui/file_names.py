"""Where export dialogs start: the source's folder, with a name that says what the file holds."""

from __future__ import annotations

from pathlib import Path

from sparsegui.core.loading.source import SourceInfo

SUFFIXES = {".pt": ".pt", ".pth": ".pth", ".bin": ".pt", ".ckpt": ".pt", ".safetensors": ".safetensors",
            ".h5": ".h5", ".hdf5": ".h5", ".json": ".safetensors"}


def _stem(path: Path) -> str:
    name = path.name
    for ending in (".safetensors.index.json", ".bin.index.json", ".index.json"):
        if name.endswith(ending):
            return name[: -len(ending)]
    return path.stem


def suggested_path(source: SourceInfo, kind: str) -> str:
    """``<stem>-pruned.<ext>`` (``kind="pruned"``), ``<stem>-with-masks.<ext>`` (``"masked"``), ``<stem>-masks.h5``
    (``"masks"``) or ``<stem>.recipe.json`` (``"recipe"``), in the source's folder (the working folder for a demo)."""
    if source.path:
        path = Path(source.path)
        folder = path if path.is_dir() else path.parent
        stem = path.name if path.is_dir() else _stem(path)
        suffix = ".safetensors" if path.is_dir() else SUFFIXES.get(path.suffix.lower(), ".pt")
    else:
        folder, stem, suffix = Path.cwd(), source.demo or "model", ".pt"
    name = {"pruned": f"{stem}-pruned{suffix}", "masked": f"{stem}-with-masks{suffix}", "masks": f"{stem}-masks.h5",
            "recipe": f"{stem}.recipe.json", "folder": f"{stem}-pruned", "stats": f"{stem}-stats.csv"}[kind]
    return str(folder / name)
