"""An open model and everything done to it: the one object the CLI, the GUI and scripts drive.

The document keeps the model's structure (captured once when opened) and its pruning state as immutable values
(:mod:`sparsegui.core.state`). An operation is computed first (:meth:`Document.plan`: validates, works out every
new mask, changes nothing — safe in a worker thread) and applied after (:meth:`Document.commit`: swaps the state
and records the step, in time proportional to the number of tensors). Undo and redo swap states back.

:attr:`Document.model` hands out the ``nn.Module`` in exactly the form ``torch.nn.utils.prune`` would have left
it (``X_orig``, ``X_mask``, hooks, ``X``); from then on the document keeps that module in step after every
change, as torch would (at torch's memory cost). The app and the command line never ask for it: they read the
state, which costs 1 bit per entry for each mask and nothing for the original tensors (memory-mapped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsegui.core import operations as ops
from sparsegui.core.devices import parse_device
from sparsegui.core.errors import Cancelled, LoadError, PruneError, SparseGUIError
from sparsegui.core.export.folder import SHARD_SIZE
from sparsegui.core.history import Command, History
from sparsegui.core.loading import LoadedModel, LoadOptions, load_demo, load_model
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.state import ModelState, Original, TensorState
from sparsegui.core.steps import GlobalStep, PruneStep, RemoveStep, Step
from sparsegui.core.structure import ModelStructure
from sparsegui.core.targets import TensorRef, model_order, resolve_targets
from sparsegui.core.torchform import dereparametrize, materialize_module

NONFINITE_PREFIX = "NaN/Inf: "


def nonfinite_warning(bad: Sequence[str], limit: int = 5) -> str | None:
    """A one-line warning naming the tensors that hold NaN or Inf, or None."""
    if not bad:
        return None
    shown = ", ".join(bad[:limit]) + ("…" if len(bad) > limit else "")
    return f"{NONFINITE_PREFIX}{len(bad)} tensor(s) hold NaN or Inf values: {shown}"


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    return tensor if tensor.device == device else tensor.to(device)


class SourceChanged(SparseGUIError):
    """A file the open model is memory-mapped from was written to since it was opened."""


class StaleChange(SparseGUIError):
    """A change was computed from a state that is no longer current (something else changed the model)."""


def _override(module: nn.Module, local: str, param: nn.Parameter, ts: TensorState) -> Callable[[], None]:
    """Make torch-form ``module`` compute ``local`` from ``ts`` (its ``X_orig``/``X_mask`` when it is pruned
    there, else the parameter's data); returns what puts it back."""
    mask_name = local + "_mask"
    if mask_name in module._buffers:
        old_data, old_mask = param.data, module._buffers[mask_name]
        values = ts.values.tensor()
        param.data = values
        module._buffers[mask_name] = ts.pruning.mask.as_dtype(values.dtype, values.device) if ts.pruning else \
            torch.ones_like(values)

        def undo() -> None:
            param.data = old_data
            module._buffers[mask_name] = old_mask
        return undo
    old = param.data
    param.data = ts.effective()
    return lambda: setattr(param, "data", old)


class Document:
    """A model, where it came from, its pruning state and its undo history."""

    def __init__(self, loaded: LoadedModel) -> None:
        self._module = loaded.model
        self.source = loaded.source
        try:
            prunings, layouts = dereparametrize(self._module)
        except PruneError as exc:  # a saved mask that holds something else than 0 and 1
            name = Path(self.source.path).name if self.source.path else "the model"
            raise LoadError(f"{name}: {exc}") from exc
        self.structure = ModelStructure(self._module)
        tensors = self.structure.initial_states()
        for (path, local), pruning in prunings.items():
            name = self.structure.slots[(path, local)]
            tensors[name] = TensorState(tensors[name].values, pruning)
        self.history = History(ModelState(tensors, layouts))
        first = next(iter(self.structure.tensors.values()), None)
        self.device: torch.device = first.param.device if first is not None else torch.device("cpu")
        self._handed_out = False  # whether `model` was asked for: then it is kept in torch's form
        self._torch_form: ModelState | None = None  # the state the handed-out module shows

    @classmethod
    def open(cls, path: str | Path, options: LoadOptions | None = None, progress: ProgressCallback | None = None,
             cancel: CancelToken | None = None) -> Document:
        return cls(load_model(path, options, progress, cancel))

    @classmethod
    def demo(cls, name: str = "lenet") -> Document:
        return cls(load_demo(name))

    # -- looking -----------------------------------------------------------------------------------------------
    @property
    def state(self) -> ModelState:
        """The current pruning state (immutable: read it from any thread)."""
        return self.history.state

    @property
    def model(self) -> nn.Module:
        """The model as ``torch.nn.utils.prune`` would have left it. Handing it out keeps it in step from now on."""
        self._handed_out = True
        self._sync()
        return self._module

    def modules(self) -> dict[str, nn.Module]:
        """``dict(model.named_modules())`` of the handed-out model (see :attr:`model`)."""
        return dict(self.model.named_modules())

    def tensor_names(self) -> list[str]:
        """Canonical names of the prunable tensors, in model order."""
        return model_order(self.structure, self.state)

    def report(self, counts: bool = True) -> Any:
        """What the model holds, as ``inspect`` shows it; ``counts=False`` reads no tensor (zeros left at 0)."""
        from sparsegui.core.inspection import inspect_document

        return inspect_document(self, counts)

    def scan(self, names: Sequence[str] | None = None, progress: ProgressCallback | None = None,
             cancel: CancelToken | None = None, norms: bool = True) -> None:
        """Count zeros and NaN/Inf of the tensors not counted yet (all by default; read-only, any thread) and, with
        ``norms``, measure their norm removed; then name the tensors holding NaN or Inf in the source's warnings."""
        from sparsegui.core.stats import count_all

        state = self.state
        count_all(state, self.tensor_names() if names is None else names, progress, cancel, norms)
        bad = [f"{name} ({ts.scanned.nonfinite})" for name, ts in state.tensors.items()
               if ts.scanned is not None and ts.scanned.nonfinite]
        warning = nonfinite_warning(bad)
        self.source.warnings = [w for w in self.source.warnings if not w.startswith(NONFINITE_PREFIX)]
        if warning:
            self.source.warnings.append(warning)

    def resolve(self, targets: Sequence[str], types: Sequence[str] | None = None, *,
                pruned_only: bool = False) -> list[TensorRef]:
        """The tensors ``targets`` (names or glob patterns) and ``types`` name, in model order."""
        names = resolve_targets(self.structure, self.state, targets, types, pruned_only=pruned_only)
        return [TensorRef.parse(name) for name in names]

    @property
    def modified(self) -> bool:
        return self.history.modified

    def check_source(self, action: str) -> str | None:
        """Whether the files the model came from changed on disk, checked before every operation and export.

        A change is never silently used: when the tensors were read into memory, or the file was replaced or
        removed (what was mapped stays as it was), the open model is intact and a warning is added (and returned);
        when a memory-mapped file was written to in place, its values may have changed under the open model, and
        ``action`` is refused with :class:`SourceChanged`."""
        change = self.source.disk_change()
        if change is None:
            return None
        kind, message = change
        if kind == "rewritten" and not self.source.in_memory:
            raise SourceChanged(f"{message}: the open model is read from that file and may no longer be what was "
                                f"opened, so {action} is refused; reopen the file (Export Recipe first to keep your "
                                "steps)")
        warning = f"{message}; the open model is still what was read then"
        if warning not in self.source.warnings:
            self.source.warnings.append(warning)
        return warning

    # -- changing ----------------------------------------------------------------------------------------------
    def plan(self, step: Step, *, masks: ops.MaskSource = None, base_dir: Path | None = None,
             progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
             base: ModelState | None = None) -> ops.Change:
        """Work ``step`` out against the current state (or ``base``, e.g. the state after earlier planned steps)
        without changing anything (any thread)."""
        state = self.state if base is None else base
        self.check_source(step.label())
        if isinstance(step, PruneStep):
            return ops.plan_prune(self.structure, state, step, masks, base_dir, self.device, progress, cancel)
        if isinstance(step, GlobalStep):
            return ops.plan_global(self.structure, state, step, self.device, progress, cancel)
        return ops.plan_remove(self.structure, state, step, progress, cancel)

    def commit(self, change: ops.Change) -> Command:
        """Apply a planned change (refused if the model changed since it was planned) and record it."""
        return self.commit_all([change])

    def commit_all(self, changes: Sequence[ops.Change], label: str | None = None) -> Command:
        """Apply planned changes made one after the other (each on the state the previous one leads to) as one
        undo step; refused, with nothing applied, if the model changed since the first was planned."""
        if not changes:
            raise PruneError("nothing to apply")
        if changes[0].base is not self.state or any(b.base is not a.after for a, b in pairwise(changes)):
            raise StaleChange(f"{changes[0].label}: the model changed while it was being computed; nothing was "
                              "applied")
        command = Command([c.step for c in changes], changes[0].base, changes[-1].after,
                          [name for c in changes for name in c.touched], label)
        self.history.push(command)
        self._sync()
        return command

    def apply(self, step: Step, *, masks: ops.MaskSource = None, base_dir: Path | None = None,
              progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Command:
        return self.commit(self.plan(step, masks=masks, base_dir=base_dir, progress=progress, cancel=cancel))

    def prune(self, method: str, targets: Sequence[str], *, types: Sequence[str] | None = None,
              amount: object = None, n: object = None, dim: object = None, seed: int | None = None,
              params: Mapping[str, Any] | None = None,
              mask: str | Path | Mapping[str, torch.Tensor] | torch.Tensor | None = None,
              keep: int | None = None, group: int | None = None,
              base_dir: Path | None = None, progress: ProgressCallback | None = None,
              cancel: CancelToken | None = None) -> Command:
        """Prune each target tensor with ``method`` (a name from :mod:`sparsegui.core.methods`), as torch's
        functional API does: each target ``X`` gets ``X_orig``, ``X_mask`` and a forward-pre hook (a
        ``PruningContainer`` when pruned again). ``keep``/``group`` are ``nm_unstructured``'s N:M. Nothing
        changes unless every target validates."""
        path = str(mask) if isinstance(mask, (str, Path)) else None
        step = PruneStep(method, tuple(targets), tuple(types or ()), amount, n, dim, seed,  # type: ignore[arg-type]
                         dict(params or {}), path, keep, group)
        given = None if path is not None else mask
        return self.apply(step, masks=given, base_dir=base_dir, progress=progress, cancel=cancel)

    def global_prune(self, method: str, targets: Sequence[str], amount: object, *,
                     types: Sequence[str] | None = None, seed: int | None = None,
                     progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Command:
        """``prune.global_unstructured`` over the targets: one threshold, uneven per-tensor sparsity."""
        step = GlobalStep(method, tuple(targets), amount, tuple(types or ()), seed)  # type: ignore[arg-type]
        return self.apply(step, progress=progress, cancel=cancel)

    def remove(self, targets: Sequence[str] = ("*",), *, types: Sequence[str] | None = None,
               progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Command:
        """``prune.remove`` each target: the pruning becomes permanent (``X`` is a plain parameter again)."""
        return self.apply(RemoveStep(tuple(targets), tuple(types or ())), progress=progress, cancel=cancel)

    def undo(self) -> Command | None:
        command = self.history.undo()
        self._sync()
        return command

    def redo(self) -> Command | None:
        command = self.history.redo()
        self._sync()
        return command

    def go_to(self, index: int) -> list[Command]:
        """Undo or redo until ``index`` steps are done (what a click in the history view asks for)."""
        passed = self.history.go_to(index)
        self._sync()
        return passed

    def move_to(self, device: str | torch.device, cancel: CancelToken | None = None,
                progress: ProgressCallback | None = None) -> torch.device:
        """Move the model's tensors to ``device`` tensor by tensor, with progress; not an undo step. On a cancel or an
        error (out of memory on the device) everything goes back where it was."""
        target = parse_device(device)
        self.check_source("the move")
        if cancel is not None and cancel.cancelled:
            raise Cancelled("cancelled by the user; the model did not move")
        holders = [slot.holder for slot in self.structure.tensors.values()]
        buffers = [(slot, b) for slot in self.structure.modules.values() for b in slot.buffers if b.tensor is not None]
        moved: list[tuple[Any, torch.Tensor | None]] = []
        try:
            for index, holder in enumerate(holders):
                check(cancel)
                report(progress, index / max(len(holders), 1), f"moving to {target}")
                moved.append((holder, holder.tensor))
                holder.tensor = _to_device(holder.tensor, target)
            for _, buffer in buffers:
                moved.append((buffer, buffer.tensor))
                buffer.tensor = _to_device(buffer.tensor, target)  # type: ignore[arg-type]
        except BaseException:
            for owner, tensor in moved:
                owner.tensor = tensor
            raise
        for slot in self.structure.tensors.values():
            slot.param.data = slot.holder.tensor
        modules = dict(self._module.named_modules(remove_duplicate=False))
        for module_slot, buffer in buffers:
            modules[module_slot.path]._buffers[buffer.name] = buffer.tensor
        self.device = target
        self._torch_form = None
        self._sync()
        report(progress, 1.0, f"on {target}")
        return target

    @contextmanager
    def forward_model(self) -> Iterator[nn.Module]:
        """The model with every pruned tensor's product in place of its values, for a forward pass (no hooks)."""
        if self._handed_out:
            yield self._module
            return
        state = self.state
        changed = [n for n, ts in state.tensors.items()
                   if ts.pruning is not None or not isinstance(ts.values, Original)]
        slots = self.structure.tensors
        try:
            for name in changed:
                slots[name].param.data = state.tensors[name].effective()
            yield self._module
        finally:
            for name in changed:
                slots[name].param.data = slots[name].holder.tensor

    @contextmanager
    def forward_with(self, tensors: Mapping[str, TensorState]) -> Iterator[nn.Module]:
        """The model for a forward pass as if ``tensors`` (canonical name → state, e.g. from an uncommitted plan)
        replaced their current states; everything is put back afterwards. Nothing is recorded."""
        if not self._handed_out:
            overrides = {name: ts.effective() for name, ts in tensors.items()}
            slots = self.structure.tensors
            with self.forward_model() as module:
                saved = {name: slots[name].param.data for name in overrides}
                try:
                    for name, value in overrides.items():
                        slots[name].param.data = value
                    yield module
                finally:
                    for name, value in saved.items():
                        slots[name].param.data = value
            return
        self._sync()
        restore: list[Callable[[], None]] = []
        modules = dict(self._module.named_modules(remove_duplicate=False))
        try:
            for name, ts in tensors.items():
                slot = self.structure.tensors[name]
                for qualname in (name, *slot.aliases):
                    path, _, local = qualname.rpartition(".")
                    restore.append(_override(modules[path], local, slot.param, ts))
            yield self._module
        finally:
            for undo in reversed(restore):
                undo()

    # -- the handed-out module ---------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Give the handed-out module torch's form for the current state (only modules whose tensors changed)."""
        state = self.state
        previous = self._torch_form
        if not self._handed_out or previous is state:
            return
        if previous is None:
            paths = set(self.structure.modules)
        else:
            paths = {self.structure.tensors[n].module for n in state.changed_since(previous)}
            paths |= {p for p, layout in state.layouts.items() if previous.layouts.get(p) is not layout}
            for name in state.changed_since(previous):
                paths |= {a.rpartition(".")[0] for a in self.structure.tensors[name].aliases}
        modules = dict(self._module.named_modules(remove_duplicate=False))
        for path in paths:
            slot = self.structure.modules[path]
            names = {local: self.structure.slots[(path, local)] for local in slot.params if local not in slot.empty}
            materialize_module(
                modules[path], state.layouts.get(path) or slot.layout(),
                {local: self.structure.tensors[name].param for local, name in names.items()},
                {local: state.tensors[name] for local, name in names.items()},
                {b.name: b.tensor for b in slot.buffers},
            )
        self._torch_form = state

    # -- recording and writing ----------------------------------------------------------------------------------
    def recipe(self) -> dict[str, Any]:
        from sparsegui.core.recipe import recipe_from_steps

        return recipe_from_steps(self.history.steps())

    def export(self, path: str | Path, *, keep_masks: bool = False, shard_size: int | None = None,
               mask_layout: str = "torch", progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None) -> Path:
        """Write the state_dict atomically (the state as it is now); a cancel before the final rename leaves the old
        file as it was. Marks the history clean at the state written. With ``keep_masks``, ``mask_layout`` says how:
        torch's ``X_orig``/``X_mask``, or ``modelopt``, ``asp``, ``llm-compressor`` (:mod:`~.mask_layouts`)."""
        from sparsegui.core.exporting import export_state

        self.check_source("the export")
        state, index = self.state, self.history.index
        written = export_state(self.structure, state, self.source, self.history.steps(), path,
                               keep_masks=keep_masks, shard_size=shard_size or SHARD_SIZE,
                               mask_layout=mask_layout, progress=progress, cancel=cancel)
        if self.history.index == index and self.state is state:
            self.history.mark_clean()
        return written

    def export_masks(self, path: str | Path, progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None) -> Path:
        from sparsegui.core.exporting import export_masks

        self.check_source("the export")
        return export_masks(self.structure, self.state, path, progress=progress, cancel=cancel)


__all__ = ["Command", "Document", "PruneError", "SourceChanged", "StaleChange"]
