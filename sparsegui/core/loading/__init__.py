"""Open a model from a demo name or a file; the loader is chosen from the file's content."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsegui.core.demos import DEFAULT_DEMO, build_demo
from sparsegui.core.errors import LoadError
from sparsegui.core.loading import hf_arch
from sparsegui.core.loading.arch import load_into_architecture
from sparsegui.core.loading.budgets import bounded_views
from sparsegui.core.loading.folders import Folder, config_summary, config_ties, find_folder, load_bin_index
from sparsegui.core.loading.hdf5_files import load_hdf5
from sparsegui.core.loading.paths import require_regular_file
from sparsegui.core.loading.rebuild import apply_saved_masks, rebuild_model
from sparsegui.core.loading.safetensors_files import load_safetensors, load_sharded
from sparsegui.core.loading.sniff import Format, sniff
from sparsegui.core.loading.source import FileStamp, SourceInfo
from sparsegui.core.loading.statedicts import (
    check_dense,
    choose_state_dict,
    split_pruned,
    strip_wrapper_prefix,
)
from sparsegui.core.loading.torch_files import load_torch_file
from sparsegui.core.loading.trusted import (
    load_exported_program,
    load_torchscript,
    name_kinds,
    require_trust,
)
from sparsegui.core.mask_layouts import split_tool_masks
from sparsegui.core.paths import shard_files
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.safety import require_safe_torch

__all__ = [
    "Format",
    "LoadOptions",
    "LoadedModel",
    "SourceInfo",
    "load_demo",
    "load_model",
    "require_regular_file",
    "sniff",
]


@dataclass
class LoadOptions:
    """How to open a file: which state_dict (``key``), which architecture, and whether code may run."""

    key: str | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    arch_path: str | None = None
    trust: bool = False
    classes: bool = True
    """For a model folder: build the real architecture with ``transformers`` when it is installed (seconds of
    importing); False: the tree rebuilt from the keys (instant; the app shows it first, then the real classes)."""


@dataclass
class LoadedModel:
    model: nn.Module
    source: SourceInfo


def load_demo(name: str = DEFAULT_DEMO) -> LoadedModel:
    model = build_demo(name)
    source = SourceInfo(format="demo", demo=name, key_order=list(model.state_dict()))
    return LoadedModel(model, source)


def _from_state_dict(
    state: Mapping[str, torch.Tensor], source: SourceInfo, options: LoadOptions, filename: str,
    folder: Folder | None = None,
) -> nn.Module:
    """Build the model for a state_dict: the architecture given (``--arch``), the one a model folder's config names
    (with ``transformers``), else a tree rebuilt from the keys."""
    check_dense(state, filename)
    state = bounded_views(state, filename)
    stripped, source.prefix = strip_wrapper_prefix(state)
    clean, masks = split_pruned(stripped)
    clean, tool_masks, layout = split_tool_masks(clean)
    source.mask_layout = layout or ("torch" if masks else None)
    if folder is not None and (note := folder.modelopt_note()) is not None:
        source.warnings.append(note)
    masks.update(tool_masks)
    source.key_order = list(clean)
    model: nn.Module | None = None
    if options.arch:
        model, source.missing_keys, source.unexpected_keys = load_into_architecture(
            options.arch, options.arch_kwargs, options.arch_path, clean
        )
        source.arch, source.arch_kwargs, source.arch_path = options.arch, dict(options.arch_kwargs), options.arch_path
        if source.unexpected_keys:
            source.warnings.append(f"{len(source.unexpected_keys)} key(s) not used by the architecture")
    elif folder is not None and folder.config and options.classes:
        try:
            model, source.architecture = hf_arch.build(folder, clean, options.trust)
        except hf_arch.ArchUnavailable as exc:
            source.warnings.append(f"module tree rebuilt from the keys: {exc}")
    if model is None:
        config = folder.config if folder is not None else {}
        model_type = config.get("model_type") if isinstance(config.get("model_type"), str) else None
        model = rebuild_model(clean, filename, model_type, config_ties(config, clean))
        source.inferred = True
    apply_saved_masks(model, masks, filename)
    return model


def _from_module(model: nn.Module, source: SourceInfo) -> nn.Module:
    source.key_order = list(model.state_dict())
    return model.eval()


def load_model(
    path: str | Path,
    options: LoadOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> LoadedModel:
    """Open ``path`` as a model. Raises :class:`LoadError` (or :class:`TrustRequired`) with a one-line message,
    or :class:`~sparsegui.core.errors.Cancelled`.

    Nothing here reads every byte: counting zeros and NaN/Inf (:meth:`Document.scan`) and the file's SHA-256
    (``source.digest()``) come later, when someone asks.
    """
    require_safe_torch()
    report(progress, 0.0, f"reading {Path(path).name}")
    loaded = _load_model(Path(path), options or LoadOptions())
    check(cancel)
    report(progress, 1.0, f"opened {Path(path).name}")
    return loaded


COPY_LIMIT = 256 << 20
"""Files up to this size (all files of a sharded model together) are read into memory: a later change on disk
cannot touch the open model. Bigger ones are memory-mapped (their pages stay the kernel's to drop); a change on disk
is detected before every operation and export (see ``Document.check_source``)."""


def _stamps(path: Path, fmt: Format) -> list[FileStamp]:
    files = [path]
    if fmt is Format.SAFETENSORS_INDEX:
        files += shard_files(path)  # empty for a bad index: the loader reports that itself
    return [FileStamp.of(f) for f in files if f.is_file()]


def _load_folder(path: Path, options: LoadOptions) -> LoadedModel:
    """A Hugging Face model folder: its weights (safetensors or weights-only pickles) and config.json."""
    folder = find_folder(path)
    weights = folder.weights
    fmt = sniff(weights)
    source = SourceInfo(path=str(path), format=f"model folder ({fmt.value})", trusted=options.trust,
                        folder=str(path), weights=str(weights), config=config_summary(folder.config))
    files = [f for f in folder.weight_files() if f.is_file()]
    source.files = [FileStamp.of(f) for f in [*files, path / "config.json"] if f.is_file()]
    copy = sum(f.stat().st_size for f in files) <= COPY_LIMIT
    source.in_memory = copy or fmt is Format.TORCH_LEGACY
    if options.key not in (None, ""):
        raise LoadError(f"{path.name}: --key applies only to torch checkpoints holding several dicts")
    state: Mapping[str, torch.Tensor]
    if fmt is Format.SAFETENSORS_INDEX:
        state, source.metadata = load_sharded(weights, copy)
    elif fmt is Format.SAFETENSORS:
        state, source.metadata = load_safetensors(weights, copy)
    elif weights.name.endswith(".index.json"):
        state = load_bin_index(weights, options.trust)
    elif fmt in (Format.TORCH_ZIP, Format.TORCH_LEGACY):
        source.key, state, source.candidates = choose_state_dict(
            load_torch_file(weights, fmt, options.trust, mmap=not copy), None, weights.name)
    else:
        raise LoadError(f"{weights.name}: {fmt.value} is not a model folder's weights")
    if not state:
        raise LoadError(f"{path.name}: the weights hold no tensors")
    return LoadedModel(_from_state_dict(state, source, options, path.name, folder), source)


def _load_model(path: Path, options: LoadOptions) -> LoadedModel:
    path = Path(path)
    if not path.exists():
        raise LoadError(f"{path}: no such file")
    if path.is_dir():
        return _load_folder(path, options)
    fmt = sniff(path)
    source = SourceInfo(path=str(path), format=fmt.value, trusted=options.trust)
    source.files = _stamps(path, fmt)
    copy = sum(stamp.size for stamp in source.files) <= COPY_LIMIT
    source.in_memory = copy or fmt in (Format.HDF5, Format.TORCH_LEGACY, Format.TORCHSCRIPT, Format.EXPORTED_PROGRAM)
    name = path.name
    if fmt in (Format.TORCH_ZIP, Format.TORCH_LEGACY):
        obj = load_torch_file(path, fmt, options.trust, mmap=not copy)
        if isinstance(obj, nn.Module):
            return LoadedModel(_from_module(obj, source), source)
        if isinstance(obj, Mapping) and options.trust:
            modules = {k: v for k, v in obj.items() if isinstance(v, nn.Module)}
            chosen = options.key if options.key in modules else next(iter(modules), None)
            if chosen is not None and (options.key is None or options.key in modules):
                source.key, source.candidates = str(chosen), [str(k) for k in modules]
                return LoadedModel(_from_module(modules[chosen], source), source)
        source.key, state, source.candidates = choose_state_dict(obj, options.key, name)
        return LoadedModel(_from_state_dict(state, source, options, name), source)
    if fmt is Format.SAFETENSORS:
        state, source.metadata = load_safetensors(path, copy)
    elif fmt is Format.SAFETENSORS_INDEX:
        state, source.metadata = load_sharded(path, copy)
    elif fmt is Format.HDF5:
        state, attrs = load_hdf5(path)
        source.metadata = {k: str(v) for k, v in attrs.items()}
    else:
        require_trust(path, fmt, options.trust)
        loader = load_torchscript if fmt is Format.TORCHSCRIPT else load_exported_program
        state, kinds = loader(path)
        model = _from_state_dict(state, source, options, name)
        name_kinds(model, kinds)
        return LoadedModel(model, source)
    if options.key not in (None, ""):
        raise LoadError(f"{name}: --key {options.key!r} applies only to torch checkpoints holding several dicts")
    if not state:
        raise LoadError(f"{name}: the file holds no tensors")
    return LoadedModel(_from_state_dict(state, source, options, name), source)


def parse_arch_kwargs(text: str | None) -> dict[str, Any]:
    """Parse ``--arch-kwargs`` JSON (an object)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit integer, deep nesting
        raise LoadError(f"--arch-kwargs is not valid JSON: {str(exc)[:120] or type(exc).__name__}") from exc
    if not isinstance(value, dict):
        raise LoadError("--arch-kwargs must be a JSON object, e.g. '{\"num_classes\": 10}'")
    return value
