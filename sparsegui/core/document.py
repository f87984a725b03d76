"""An open model and everything done to it: the one object the CLI, the GUI and scripts drive.

Every operation validates first, snapshots the modules it touches, mutates through ``torch.nn.utils.prune`` and
pushes an undoable :class:`~sparsegui.core.history.Command`; if anything fails or is cancelled midway, the
snapshot is restored and the model is exactly as it was.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsegui.core import operations as ops
from sparsegui.core.devices import parse_device
from sparsegui.core.errors import Cancelled, LoadError, PruneError, SparseGUIError
from sparsegui.core.history import Command, History
from sparsegui.core.inspection import ModelReport, inspect_model
from sparsegui.core.loading import LoadedModel, LoadOptions, load_demo, load_model
from sparsegui.core.loading.masks import load_masks
from sparsegui.core.methods import resolve_method
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.pruned import pruning_hooks
from sparsegui.core.snapshot import Snapshot
from sparsegui.core.targets import TensorRef, resolve_targets


def _amount_text(amount: object) -> str:
    if isinstance(amount, float):
        return f"{amount * 100:g}%"
    return f"{amount}" if amount is not None else ""


def _where(refs: Sequence[TensorRef]) -> str:
    return refs[0].qualname if len(refs) == 1 else f"{len(refs)} tensors"


def _move_module(module: nn.Module, device: torch.device) -> None:
    """Move ``module``'s own tensors, then recompute each pruned ``X`` there from ``X_orig`` and ``X_mask``."""
    _move_own_tensors(module, device)
    for name, hook in pruning_hooks(module).items():
        setattr(module, name, hook.apply_mask(module))


def _move_own_tensors(module: nn.Module, device: torch.device) -> None:
    """``module.to(device)`` without its children: parameters keep their identity (their ``.data`` moves), as with
    ``nn.Module.to``."""
    for param in module._parameters.values():
        if param is not None and param.device != device:
            param.data = param.data.to(device)
            if param.grad is not None:
                param.grad.data = param.grad.data.to(device)
    for key, buffer in module._buffers.items():
        if buffer is not None and buffer.device != device:
            module._buffers[key] = buffer.to(device)


class Document:
    """A model, where it came from, and its undo history."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.model: nn.Module = loaded.model
        self.source = loaded.source
        self.history = History()
        first = next(iter(self.model.parameters()), None)
        self.device: torch.device = first.device if first is not None else torch.device("cpu")

    @classmethod
    def open(
        cls,
        path: str | Path,
        options: LoadOptions | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Document:
        return cls(load_model(path, options, progress, cancel))

    @classmethod
    def demo(cls, name: str = "lenet") -> Document:
        return cls(load_demo(name))

    # -- looking -----------------------------------------------------------------------------------------------
    def report(self) -> ModelReport:
        return inspect_model(self.model, self.source.to_json())

    def modules(self) -> dict[str, nn.Module]:
        return dict(self.model.named_modules())

    def resolve(
        self, targets: Sequence[str], types: Sequence[str] | None = None, *, pruned_only: bool = False
    ) -> list[TensorRef]:
        return resolve_targets(self.model, targets, types, pruned_only=pruned_only)

    @property
    def modified(self) -> bool:
        return self.history.modified

    # -- changing ----------------------------------------------------------------------------------------------
    def _run(
        self, label: str, step: dict[str, Any], refs: Sequence[TensorRef], action: Callable[[], None]
    ) -> Command:
        modules = self.modules()
        touched = [modules[name] for name in dict.fromkeys(r.module for r in refs)]
        before = Snapshot(touched)
        try:
            action()
        except BaseException as exc:
            before.restore()
            if isinstance(exc, SparseGUIError):
                raise
            if isinstance(exc, Exception):
                raise PruneError(f"{label} failed and was rolled back ({type(exc).__name__}: {exc})") from exc
            raise
        command = Command(label, step, before, Snapshot(touched))
        self.history.push(command)
        return command

    def prune(
        self,
        method: str,
        targets: Sequence[str],
        *,
        types: Sequence[str] | None = None,
        amount: object = None,
        n: object = None,
        dim: object = None,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        mask: str | Path | Mapping[str, torch.Tensor] | torch.Tensor | None = None,
        base_dir: Path | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Command:
        """Prune each target tensor with ``method`` (a name from :mod:`sparsegui.core.methods`).

        Modifies the model in place, as torch does: each target ``X`` gets ``X_orig``, ``X_mask`` and a forward-pre
        hook (a ``PruningContainer`` when pruned again). Nothing changes unless every target validates.
        """
        spec = resolve_method(method, base_dir)
        kwargs = ops.prune_settings(spec, amount, n, dim, params)
        refs = self.resolve(targets, types)
        modules = self.modules()
        for ref in refs:
            ops.validate_target(modules[ref.module], ref, spec, kwargs)
        masks: dict[str, torch.Tensor] | None = None
        step: dict[str, Any] = {"op": "prune", "method": spec.name, "targets": [r.qualname for r in refs]}
        step.update({k: v for k, v in kwargs.items()})
        if spec.takes_mask:
            masks = self._masks_for(refs, mask, base_dir)
            ops.validate_masks(modules, refs, masks)
            if isinstance(mask, (str, Path)):
                step["mask"] = str(Path(mask).resolve() if base_dir is None else (base_dir / mask).resolve())
        elif mask is not None:
            raise PruneError(f"{spec.name} takes no mask")
        if spec.random or spec.origin != "torch":
            seed = secrets.randbelow(2**31) if seed is None else seed
            step["seed"] = seed
        label = f"{spec.name.rsplit(':', 1)[-1]} {_amount_text(kwargs.get('amount'))} on {_where(refs)}"

        def action() -> None:
            with ops.seeded(seed, self.device):
                ops.prune_each(modules, refs, spec, kwargs, masks, progress, cancel)

        return self._run(" ".join(label.split()), step, refs, action)

    def _masks_for(
        self,
        refs: Sequence[TensorRef],
        mask: str | Path | Mapping[str, torch.Tensor] | torch.Tensor | None,
        base_dir: Path | None,
    ) -> dict[str, torch.Tensor]:
        if mask is None:
            raise PruneError("custom_from_mask needs a mask (a file or a tensor)")
        if isinstance(mask, (str, Path)):
            path = Path(mask) if base_dir is None else base_dir / mask
            try:
                loaded = load_masks(path)
            except LoadError as exc:
                raise PruneError(str(exc)) from exc
        elif isinstance(mask, torch.Tensor):
            loaded = {"": mask}
        else:
            loaded = dict(mask)
        if set(loaded) == {""}:
            if len(refs) != 1:
                raise PruneError("a single mask tensor can only prune one target; use a dict keyed by tensor name")
            loaded = {refs[0].qualname: loaded[""]}
        return loaded

    def global_prune(
        self,
        method: str,
        targets: Sequence[str],
        amount: object,
        *,
        types: Sequence[str] | None = None,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Command:
        """``prune.global_unstructured`` over the targets: one threshold, uneven per-tensor sparsity."""
        refs = self.resolve(targets, types)
        modules = self.modules()
        step: dict[str, Any] = {"op": "global", "method": method, "targets": [r.qualname for r in refs],
                                "amount": amount}
        if method == "random_unstructured":
            seed = secrets.randbelow(2**31) if seed is None else seed
            step["seed"] = seed

        def action() -> None:
            with ops.seeded(seed, self.device):
                ops.global_prune(modules, refs, method, amount, progress, cancel)

        return self._run(f"global {method} {_amount_text(amount)} on {_where(refs)}", step, refs, action)

    def remove(
        self,
        targets: Sequence[str] = ("*",),
        *,
        types: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Command:
        """``prune.remove`` each target: the pruning becomes permanent (``X`` is a plain parameter again)."""
        refs = self.resolve(targets, types, pruned_only=True)
        modules = self.modules()
        step = {"op": "remove", "targets": [r.qualname for r in refs]}
        return self._run(
            f"remove pruning on {_where(refs)}", step, refs, lambda: ops.remove_each(modules, refs, progress, cancel)
        )

    def undo(self) -> Command | None:
        return self.history.undo(self.device)

    def redo(self) -> Command | None:
        return self.history.redo(self.device)

    def move_to(
        self, device: str | torch.device, cancel: CancelToken | None = None, progress: ProgressCallback | None = None
    ) -> torch.device:
        """Move the model (parameters, buffers and each pruned tensor) to ``device``, module by module with progress;
        not an undo step. On a cancel or an error (out of memory on the device) everything goes back where it was."""
        target = parse_device(device)
        if cancel is not None and cancel.cancelled:
            raise Cancelled("cancelled by the user; the model did not move")
        previous = self.device
        modules = list(self.model.modules())
        try:
            for index, module in enumerate(modules):
                check(cancel)
                report(progress, index / len(modules), f"moving to {target}")
                _move_module(module, target)
        except BaseException:
            for module in modules:
                _move_module(module, previous)
            raise
        self.device = target
        report(progress, 1.0, f"on {target}")
        return target

    # -- recording and writing ----------------------------------------------------------------------------------
    def recipe(self) -> dict[str, Any]:
        from sparsegui.core.recipe import recipe_from_history

        return recipe_from_history(self)

    def export(
        self,
        path: str | Path,
        *,
        keep_masks: bool = False,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Path:
        """Write the state_dict atomically; a cancel before the final rename leaves the old file as it was."""
        from sparsegui.core.exporting import export_document

        return export_document(self, path, keep_masks=keep_masks, progress=progress, cancel=cancel)

    def export_masks(
        self, path: str | Path, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> Path:
        from sparsegui.core.exporting import export_masks

        return export_masks(self, path, progress=progress, cancel=cancel)
