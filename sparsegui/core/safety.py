"""Refusing unsafe environments, and facts about loaded data worth warning about (NaN/Inf, file digests)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn

from sparsegui.core.errors import SparseGUIError

MIN_TORCH = (2, 10)
"""torch < 2.10 has known weights-only loader flaws (CVE-2025-32434 up to 2.5.1, CVE-2026-24747 before 2.10)."""


def torch_version_problem(version: str | None = None) -> str | None:
    """Why this torch is unsafe for opening untrusted files, or None if it is fine."""
    text = version or torch.__version__
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        return None
    found = (int(match.group(1)), int(match.group(2)))
    if found < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        return (f"torch {text} has known flaws in its safe (weights-only) loader; SparseGUI needs torch >= {need} "
                f"(pip install 'torch>={need}')")
    return None


def require_safe_torch() -> None:
    problem = torch_version_problem()
    if problem is not None:
        raise SparseGUIError(problem)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def nonfinite_count(tensor: torch.Tensor) -> int:
    """How many entries are NaN or ±Inf (0 for integer tensors)."""
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.is_meta:
        return 0
    return tensor.numel() - int(torch.isfinite(tensor).sum())


def nonfinite_report(model: nn.Module, limit: int = 5) -> str | None:
    """A one-line warning naming the tensors that hold NaN or Inf, or None."""
    bad = []
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        count = nonfinite_count(tensor.detach())
        if count:
            bad.append(f"{name} ({count})")
    if not bad:
        return None
    shown = ", ".join(bad[:limit]) + ("…" if len(bad) > limit else "")
    return f"{len(bad)} tensor(s) hold NaN or Inf values: {shown}"
