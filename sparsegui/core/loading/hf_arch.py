"""The real architecture of a Hugging Face folder, built with ``transformers`` (the optional ``[hf]`` extra).

The class ``config.json`` names (``architectures[0]``) is built with its parameters on the meta device (no memory,
no initialisation) and its buffers real (rotary frequencies, attention masks: small), then the file's tensors are
assigned in place of the parameters without copying and the tied weights re-tied. A config that needs code from the
model's repository (``auto_map``) goes through the same trust step as a pickled module. When ``transformers`` is
missing, has no such class, or the file's keys do not match the class (renamed or fused tensors), the caller falls
back to the tree rebuilt from the keys and says why (:class:`ArchUnavailable`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from sparsegui.core.errors import TrustRequired
from sparsegui.core.loading.folders import Folder


class ArchUnavailable(Exception):
    """The real architecture cannot be used here; the message says why (shown once to the user)."""


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device; buffers stay real."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def remote_code(folder: Folder) -> list[str]:
    """What ``auto_map`` in config.json would import from the model's own files."""
    auto_map = folder.config.get("auto_map")
    if not auto_map:
        return []
    values = auto_map.values() if isinstance(auto_map, dict) else [auto_map]
    return [f"{folder.path.name}/{v}" if isinstance(v, str) else str(v) for v in values]


def can_build(folder: Folder) -> bool:
    """Whether :func:`build` may give real classes here (``transformers`` importable, an architecture named), without
    importing ``transformers``."""
    import importlib.util

    return bool(folder.architecture) and importlib.util.find_spec("transformers") is not None


def _show(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + ("…" if len(keys) > 3 else "")


def build(folder: Folder, state: Mapping[str, torch.Tensor], trust: bool) -> tuple[nn.Module, str]:
    """The model of class ``architectures[0]`` holding ``state``'s tensors, and the class's name."""
    arch = folder.architecture
    if arch is None:
        raise ArchUnavailable("config.json names no architecture")
    code = remote_code(folder)
    if code and not trust:
        raise TrustRequired(f"{folder.path.name}: its config.json runs code from the model's own files (auto_map: "
                            f"{_show(code)}); open it only if you trust it (--trust)", code)
    try:
        import transformers
    except ImportError as exc:
        raise ArchUnavailable("transformers is not installed (pip install 'sparsegui[hf]' to see the real "
                              "classes)") from exc
    try:
        config: Any = transformers.AutoConfig.from_pretrained(str(folder.path), local_files_only=True,
                                                              trust_remote_code=trust)
    except Exception as exc:
        raise ArchUnavailable(f"transformers cannot read config.json ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    cls = getattr(transformers, arch, None)
    if cls is None and code:
        with contextlib.suppress(Exception):
            cls = transformers.AutoModelForCausalLM._model_mapping.get(type(config), None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ArchUnavailable(f"transformers {transformers.__version__} has no class {arch}")
    try:
        with parameters_on_meta():
            model = cls._from_config(config) if hasattr(cls, "_from_config") else cls(config)
    except Exception as exc:
        raise ArchUnavailable(f"{arch} cannot be built from config.json ({type(exc).__name__}: {exc})") from exc
    result = model.load_state_dict(dict(state), strict=False, assign=True)
    tie = getattr(model, "tie_weights", None)
    if callable(tie):
        with contextlib.suppress(Exception):
            tie()
    missing = [n for n, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        parts = [f"{len(missing)} of its tensors are not in the file ({_show(missing)})"] if missing else []
        if unexpected:
            parts.append(f"{len(unexpected)} tensors of the file are not in it ({_show(unexpected)})")
        raise ArchUnavailable(f"the file's keys do not match {arch}: {'; '.join(parts)}")
    return model.eval(), arch
