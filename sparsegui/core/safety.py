"""Refusing unsafe environments, and facts about loaded data worth warning about (NaN/Inf, file digests)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn

from sparsegui.core.errors import SparseGUIError
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report

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


def file_sha256(path: str | Path, chunk: int = 1 << 20, progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None) -> str:
    digest = hashlib.sha256()
    size = max(Path(path).stat().st_size, 1)
    done = blocks = 0
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            check(cancel)
            digest.update(block)
            done += len(block)
            blocks += 1
            if blocks % 64 == 0:  # a report every 64 blocks is plenty for a progress bar
                report(progress, done / size, "computing the SHA-256")
    return digest.hexdigest()


NO_NONFINITE = frozenset({torch.float4_e2m1fn_x2})
"""Floating dtypes with no encoding for NaN or Inf (fp4 E2M1 packed two to a byte)."""
UPCAST = frozenset({torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz,
                    torch.float8_e8m0fnu})
"""float8 dtypes: ``isfinite`` is missing for most on the CPU and wrong for ``float8_e8m0fnu`` (torch 2.13 calls
its NaN, 0xFF, finite), so they are always upcast."""
UPCAST_CHUNK = 1 << 22
"""Entries upcast to float32 at a time (16 MiB) for dtypes the CPU cannot test directly."""


def nonfinite_count(tensor: torch.Tensor) -> int:
    """How many entries are NaN or ±Inf (0 for integer tensors and dtypes that cannot hold either).

    float8 variants are stored but barely computed on by the CPU: they are upcast to float32 a chunk at a time
    (which keeps NaN and Inf as they are), so memory stays bounded; so is any other dtype ``isfinite`` lacks.
    """
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.is_meta or tensor.dtype in NO_NONFINITE:
        return 0
    if tensor.dtype not in UPCAST:
        try:
            return tensor.numel() - int(torch.isfinite(tensor).sum())
        except (NotImplementedError, RuntimeError):
            pass
    flat = tensor.detach().reshape(-1)
    bad = 0
    for start in range(0, flat.numel(), UPCAST_CHUNK):
        chunk = flat[start : start + UPCAST_CHUNK].to(torch.float32)
        bad += chunk.numel() - int(torch.isfinite(chunk).sum())
    return bad


def nonfinite_report(model: nn.Module, limit: int = 5, progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None) -> str | None:
    """A one-line warning naming the tensors that hold NaN or Inf, or None."""
    bad = []
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for index, (name, tensor) in enumerate(tensors):
        check(cancel)
        report(progress, index / len(tensors), f"checking {name} for NaN and Inf")
        count = nonfinite_count(tensor.detach())
        if count:
            bad.append(f"{name} ({count})")
    if not bad:
        return None
    shown = ", ".join(bad[:limit]) + ("…" if len(bad) > limit else "")
    return f"{len(bad)} tensor(s) hold NaN or Inf values: {shown}"
