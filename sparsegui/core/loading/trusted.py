"""Files that are code: TorchScript archives and ``torch.export`` programs. Opened only after a trust step."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sparsegui.core.errors import LoadError, TrustRequired
from sparsegui.core.loading.pickles import unsafe_globals, zip_member_globals
from sparsegui.core.loading.sniff import Format


def require_trust(path: Path, fmt: Format, trust: bool) -> None:
    """Raise :class:`TrustRequired` naming what the file would import, unless the user trusted it."""
    if trust:
        return
    try:
        wanted = unsafe_globals(zip_member_globals(path))
    except Exception:
        wanted = []
    what = "a TorchScript archive" if fmt is Format.TORCHSCRIPT else "a torch.export program"
    shown = ", ".join(wanted[:6]) + ("…" if len(wanted) > 6 else "") if wanted else "its serialized code"
    raise TrustRequired(
        f"{path.name}: {what} is code and runs when opened ({shown}); open it only if you trust it (--trust)",
        wanted,
    )


def load_torchscript(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (state_dict, module path → original class name) of a TorchScript archive."""
    try:
        scripted = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise LoadError(f"{path.name}: cannot load TorchScript ({type(exc).__name__}: {exc})") from exc
    kinds = {name: getattr(mod, "original_name", type(mod).__name__) for name, mod in scripted.named_modules()}
    return {k: v.detach() for k, v in scripted.state_dict().items()}, kinds


def load_exported_program(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (state_dict, module path → class name) of a ``torch.export`` ``.pt2`` program."""
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise LoadError(f"{path.name}: cannot load torch.export program ({type(exc).__name__}: {exc})") from exc
    state = {k: v.detach() for k, v in program.state_dict.items()}
    kinds: dict[str, str] = {}
    for entry in program.module_call_graph:
        if entry.fqn:
            kinds[entry.fqn] = "Module"
    return state, kinds


def name_kinds(model: nn.Module, kinds: dict[str, str]) -> None:
    """Replace guessed kinds with the class names the archive recorded."""
    for name, module in model.named_modules():
        if name in kinds and kinds[name] not in ("Module", "") and hasattr(module, "kind"):
            module.kind = kinds[name]
