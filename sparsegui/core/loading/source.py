"""What SparseGUI knows about where a model came from: the file, its format and the state_dict's own key names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    """Digest of the opened file (of the index file for sharded safetensors); see :meth:`digest`."""

    def digest(self, progress: Any = None, cancel: Any = None) -> str | None:
        """The file's SHA-256, computed on first use (seconds for multi-GB files: call it off the UI thread, with a
        progress callback and cancel token as in :mod:`sparsegui.core.progress`)."""
        if self.sha256 is None and self.path is not None:
            from sparsegui.core.safety import file_sha256

            self.sha256 = file_sha256(self.path, progress=progress, cancel=cancel)
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
            "trusted": self.trusted,
            "missing_keys": list(self.missing_keys),
            "unexpected_keys": list(self.unexpected_keys),
            "warnings": list(self.warnings),
            "sha256": self.digest(),
        }
