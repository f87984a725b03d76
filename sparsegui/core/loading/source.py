"""What SparseGUI knows about where a model came from: the file, its format and the state_dict's own key names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileStamp:
    """A file as it was when it was read: enough to tell later that it was rewritten, replaced or removed."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, path: str | Path) -> FileStamp:
        info = os.stat(path)
        return cls(str(path), info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)

    def change(self) -> str | None:
        """``"removed"``, ``"replaced"`` (another file now has the name: what was read lives on unchanged),
        ``"rewritten"`` (the same file was written in place) or None."""
        try:
            now = FileStamp.of(self.path)
        except OSError:
            return "removed"
        if (now.inode, now.device) != (self.inode, self.device):
            return "replaced"
        if (now.size, now.mtime_ns) != (self.size, self.mtime_ns):
            return "rewritten"
        return None


@dataclass
class SourceInfo:
    """Provenance of an opened model; exports use ``key_order`` and ``prefix`` to give back the source's keys."""

    path: str | None = None
    format: str = "demo"
    demo: str | None = None
    key: str | None = None
    """Which state_dict of a training checkpoint was chosen (``"/"``-separated path; ``""`` for the whole file)."""
    candidates: list[str] = field(default_factory=list)
    prefix: str = ""
    """A ``module.`` / ``_orig_mod.`` prefix stripped from every key; exports put it back."""
    key_order: list[str] = field(default_factory=list)
    """The clean state_dict keys in the source's order (pruned ``X_orig``/``X_mask`` pairs listed as ``X``)."""
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    arch_path: str | None = None
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    trusted: bool = False
    inferred: bool = False
    """True when the module tree was rebuilt from dotted keys (no architecture code)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    """Digest of the opened file (of the index file for sharded safetensors; of a folder's weights file); see
    :meth:`digest`."""
    folder: str | None = None
    """A Hugging Face model folder (then ``path`` is the folder and ``weights`` its weights file)."""
    weights: str | None = None
    config: dict[str, str] = field(default_factory=dict)
    """The config.json fields worth showing (architectures, model_type, dtype, tie_word_embeddings, …)."""
    architecture: str | None = None
    """The transformers class the model was built with (None: rebuilt from the keys, or not a folder)."""
    files: list[FileStamp] = field(default_factory=list)
    """Every file the tensors were read from, as it was then (the index and each shard of a sharded model)."""
    in_memory: bool = True
    """Whether the tensors were copied into memory (small files) rather than memory-mapped from the files."""
    mask_layout: str | None = None
    """How the file held masks, when it did: ``torch`` (``X_orig``/``X_mask``), ``modelopt``, ``asp`` or
    ``llm-compressor`` (:mod:`sparsegui.core.mask_layouts`)."""

    def disk_change(self) -> tuple[str, str] | None:
        """``(kind, message)`` for the first file that changed on disk since it was read, or None."""
        for stamp in self.files:
            kind = stamp.change()
            if kind is not None:
                name = Path(stamp.path).name
                what = {"removed": "was removed", "replaced": "was replaced by another file",
                        "rewritten": "was written to by another program"}[kind]
                return kind, f"{name} {what} since it was opened"
        return None

    def digest(self, progress: Any = None, cancel: Any = None) -> str | None:
        """The file's SHA-256, computed on first use (seconds for multi-GB files: call it off the UI thread, with a
        progress callback and cancel token as in :mod:`sparsegui.core.progress`)."""
        if self.sha256 is None and self.path is not None:
            from sparsegui.core.safety import file_sha256

            self.sha256 = file_sha256(self.weights or self.path, progress=progress, cancel=cancel)
        return self.sha256

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "demo": self.demo,
            "key": self.key,
            "candidates": list(self.candidates),
            "prefix": self.prefix,
            "arch": self.arch,
            "inferred": self.inferred,
            "folder": self.folder,
            "weights": self.weights,
            "config": dict(self.config),
            "architecture": self.architecture,
            "trusted": self.trusted,
            "missing_keys": list(self.missing_keys),
            "unexpected_keys": list(self.unexpected_keys),
            "warnings": list(self.warnings),
            "sha256": self.sha256,
            "mask_layout": self.mask_layout,
        }
