"""List what a pickle would import, without running it."""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

import torch

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def pickle_globals(data: bytes) -> list[str]:
    """Every ``module.name`` the pickle stream(s) in ``data`` would import, in order, without duplicates."""
    found: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        recent: list[str] = []
        memo: dict[int, str] = {}
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                name = opcode.name
                if name in _STRING_OPS and isinstance(arg, (str, bytes)):
                    recent.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
                elif name == "MEMOIZE" and recent:
                    memo[len(memo)] = recent[-1]
                elif name in ("BINPUT", "LONG_BINPUT", "PUT") and recent and isinstance(arg, int):
                    memo[arg] = recent[-1]
                elif name in ("BINGET", "LONG_BINGET", "GET") and isinstance(arg, int) and arg in memo:
                    recent.append(memo[arg])
                elif name in ("GLOBAL", "INST") and isinstance(arg, str):
                    found.append(arg.replace(" ", "."))
                elif name == "STACK_GLOBAL" and len(recent) >= 2:
                    found.append(f"{recent[-2]}.{recent[-1]}")
        except Exception:
            break
    return list(dict.fromkeys(found))


def unsafe_globals(names: list[str]) -> list[str]:
    """Drop the names torch's weights-only unpickler allows."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = set(_get_allowed_globals())
    except Exception:
        allowed = set()
    for extra in torch.serialization.get_safe_globals():
        if hasattr(extra, "__qualname__"):
            allowed.add(f"{extra.__module__}.{extra.__qualname__}")
    return [n for n in names if n not in allowed and not n.startswith("torch._utils._rebuild")]


def zip_member_globals(path: Path, suffixes: tuple[str, ...] = (".pkl",)) -> list[str]:
    """What the pickles inside a zip archive would import (TorchScript, .pt2)."""
    found: list[str] = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.endswith(suffixes) and info.file_size < 256 * 1024 * 1024:
                found.extend(pickle_globals(archive.read(info)))
            if "/code/__torch__/" in info.filename and info.filename.endswith(".py"):
                dotted = info.filename.split("/code/", 1)[1][: -len(".py")].replace("/", ".")
                found.append(dotted)
    return list(dict.fromkeys(found))
