"""Open a state_dict into real architecture code: ``--arch package.module:factory``."""

from __future__ import annotations

import pkgutil
import sys
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparsegui.core.errors import LoadError


def resolve_factory(spec: str, extra_path: str | None = None) -> Any:
    """Import ``package.module:factory`` (``extra_path`` is put first on ``sys.path``)."""
    if extra_path and extra_path not in sys.path:
        sys.path.insert(0, extra_path)
    if ":" not in spec:
        raise LoadError(f"--arch {spec!r}: expected 'package.module:factory'")
    try:
        return pkgutil.resolve_name(spec)
    except (ImportError, AttributeError, ValueError) as exc:
        raise LoadError(f"--arch {spec!r}: cannot import it ({type(exc).__name__}: {exc})") from exc


def build_architecture(spec: str, kwargs: Mapping[str, Any], extra_path: str | None = None) -> nn.Module:
    """Call the factory on the meta device (no memory for weights) and check it made an ``nn.Module``."""
    factory = resolve_factory(spec, extra_path)
    try:
        with torch.device("meta"):
            model = factory(**dict(kwargs))
    except Exception as exc:
        raise LoadError(f"--arch {spec!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise LoadError(f"--arch {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _meta_leftovers(model: nn.Module) -> list[str]:
    names = [n for n, p in model.named_parameters() if p.is_meta]
    names += [n for n, b in model.named_buffers() if b.is_meta]
    return names


def load_into_architecture(
    spec: str,
    kwargs: Mapping[str, Any],
    extra_path: str | None,
    state: Mapping[str, torch.Tensor],
) -> tuple[nn.Module, list[str], list[str]]:
    """Build the architecture and assign ``state`` into it; returns (model, missing keys, unexpected keys).

    Missing parameters are an error (the model could not run); non-persistent buffers that the state_dict never
    holds are taken from a real (CPU) instance of the architecture.
    """
    model = build_architecture(spec, kwargs, extra_path)
    try:
        result = model.load_state_dict(dict(state), strict=False, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or first[0]
        raise LoadError(f"--arch {spec!r} does not match the checkpoint: {detail}") from exc
    missing = list(result.missing_keys)
    unexpected = list(result.unexpected_keys)
    if missing:
        shown = ", ".join(missing[:5]) + ("…" if len(missing) > 5 else "")
        raise LoadError(f"--arch {spec!r}: the checkpoint lacks {len(missing)} key(s) the model needs: {shown}")
    leftovers = _meta_leftovers(model)
    if leftovers:
        real = resolve_factory(spec, extra_path)(**dict(kwargs))
        real_buffers = dict(real.named_buffers())
        for name in leftovers:
            if name not in real_buffers:
                raise LoadError(f"--arch {spec!r}: {name} was never loaded")
            module_path, _, leaf = name.rpartition(".")
            model.get_submodule(module_path)._buffers[leaf] = real_buffers[name]
    return model.eval(), missing, unexpected
