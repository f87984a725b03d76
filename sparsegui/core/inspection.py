"""What a model holds: every module's parameters, buffers and hooks (pruning hooks decoded) and sparsity.

:func:`inspect_document` reads a document's structure and state — exactly what ``torch.nn.utils.prune`` would show
on the real module (``X_orig`` and ``X_mask`` in torch's order and dtypes, the hooks and their methods), without
building it. :func:`inspect_model` reads any ``nn.Module`` in torch's form directly (tests compare the two).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core import energy
from sparsegui.core.energy import Energy, combined
from sparsegui.core.names import qualify
from sparsegui.core.nm import compliance
from sparsegui.core.pruned import forward_tensor_names, method_history, method_record, pruning_hooks
from sparsegui.core.state import MethodEntry, ModelState, PackedCustomMask, Pruning, TensorState, scan
from sparsegui.core.structure import HOOK_DICTS, ModelStructure, ModuleSlot, OtherHook, type_names

if TYPE_CHECKING:
    from sparsegui.core.document import Document


@dataclass
class ParameterInfo:
    name: str
    shape: list[int]
    dtype: str
    device: str
    numel: int
    requires_grad: bool


@dataclass
class BufferInfo:
    name: str
    shape: list[int]
    dtype: str
    device: str
    numel: int
    persistent: bool


@dataclass
class HookInfo:
    kind: str
    cls: str
    tensor: str | None = None
    methods: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "class": self.cls, "tensor": self.tensor, "methods": self.methods}


@dataclass
class TensorStats:
    """A tensor the forward uses; for a pruned ``X`` that is ``X_orig * X_mask``."""

    name: str
    shape: list[int]
    dtype: str
    numel: int
    zeros: int
    pruned: bool
    nonfinite: int = 0
    """Entries that are NaN or ±Inf."""
    alias_of: str | None = None
    """For a tensor shared with another module (tied weights): the name it is counted under."""
    axes: list[str | None] = field(default_factory=list)
    """The role of each dimension: ``"out"``, ``"in"``, ``"vocab"``, ``"dim"``, ``"kernel"`` or None (unknown)."""
    energy: Energy | None = None
    """‖W‖² and ‖W ⊙ (1 − M)‖² (:mod:`sparsegui.core.energy`); None when not measured (``counts=False``)."""
    nm_compliance: float | None = None
    """The share of N:M groups along the input axis with at most N nonzeros, when asked for (``inspect --nm``)."""

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0

    @property
    def norm_removed(self) -> float | None:
        return None if self.energy is None else self.energy.norm_removed

    def to_json(self) -> dict[str, Any]:
        out = {**asdict(self), "sparsity": self.sparsity, "norm_removed": _number(self.norm_removed)}
        del out["energy"]
        for key in ("alias_of", "nm_compliance"):
            if out[key] is None:
                del out[key]
        return out


def _number(value: float | None) -> float | None:
    """JSON has no NaN: a norm that cannot be measured (NaN/Inf in the tensor) is null."""
    return None if value is None or not math.isfinite(value) else value


def _totals(numel: int, zeros: int, tensors: list[TensorStats]) -> dict[str, Any]:
    return {"parameters": numel, "zeros": zeros, "sparsity": zeros / numel if numel else 0.0,
            "norm_removed": _number(combined(t.energy for t in tensors))}


@dataclass
class ModuleInfo:
    name: str
    type: str
    inferred: bool
    parameters: list[ParameterInfo]
    buffers: list[BufferInfo]
    hooks: list[HookInfo]
    tensors: list[TensorStats]

    @property
    def numel(self) -> int:
        return sum(t.numel for t in self.tensors if t.alias_of is None)

    @property
    def zeros(self) -> int:
        return sum(t.zeros for t in self.tensors if t.alias_of is None)

    def to_json(self) -> dict[str, Any]:
        numel, zeros = self.numel, self.zeros
        return {
            "name": self.name,
            "type": self.type,
            "inferred": self.inferred,
            "parameters": [asdict(p) for p in self.parameters],
            "buffers": [asdict(b) for b in self.buffers],
            "hooks": [h.to_json() for h in self.hooks],
            "tensors": [t.to_json() for t in self.tensors],
            "totals": _totals(numel, zeros, [t for t in self.tensors if t.alias_of is None]),
        }


@dataclass
class ModelReport:
    source: dict[str, Any]
    modules: list[ModuleInfo]
    tied: list[list[str]] = field(default_factory=list)
    """Each tensor known by several names (tied weights): its canonical name first."""
    nm: str | None = None
    """The N:M pattern of the tensors' ``nm_compliance`` (``"2:4"``), when asked for."""

    @property
    def parameters(self) -> int:
        return sum(m.numel for m in self.modules)

    @property
    def zeros(self) -> int:
        return sum(m.zeros for m in self.modules)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.parameters if self.parameters else 0.0

    def module(self, name: str) -> ModuleInfo:
        return next(m for m in self.modules if m.name == name)

    def tensor(self, qualname: str) -> TensorStats:
        module, _, tensor = qualname.rpartition(".")
        return next(t for t in self.module(module).tensors if t.name == tensor)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "totals": _totals(self.parameters, self.zeros,
                              [t for m in self.modules for t in m.tensors if t.alias_of is None]),
            "tied": [list(group) for group in self.tied],
            **({"nm": self.nm} if self.nm else {}),
            "modules": [m.to_json() for m in self.modules],
        }


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# -- from a document (lean) ------------------------------------------------------------------------------------------
def entry_record(entry: MethodEntry) -> dict[str, object]:
    """A JSON-friendly description of one method of a pruning hook, as :func:`method_record` gives it in torch."""
    if isinstance(entry, PackedCustomMask):
        return {"class": "CustomFromMask", "mask": f"tensor{list(entry.mask.shape)}"}
    return method_record(entry)


def pruning_hook_info(local: str, pruning: Pruning) -> HookInfo:
    return HookInfo("forward_pre", pruning.hook_class, local, [entry_record(e) for e in pruning.methods])


def module_hook_infos(slot: ModuleSlot, pruned: dict[str, Pruning], order: tuple[str, ...]) -> list[HookInfo]:
    """The module's hooks as torch lists them: other forward-pre hooks, then the pruning hooks in order, then the
    other kinds."""
    others: dict[str, list[OtherHook]] = {}
    for hook in slot.hooks:
        others.setdefault(hook.kind, []).append(hook)
    found: list[HookInfo] = []
    for kind in HOOK_DICTS:
        found += [HookInfo(kind, h.name) for h in others.get(kind, [])]
        if kind == "forward_pre":
            found += [pruning_hook_info(local, pruned[local]) for local in order]
    return found


def tensor_stats(name: str, ts: TensorState, pruned: bool, alias_of: str | None = None,
                 axes: tuple[str | None, ...] = ()) -> TensorStats:
    counts = ts.scan()
    return TensorStats(name, list(ts.values.shape), _dtype(ts.values.dtype), ts.numel, counts.zeros, pruned,
                       counts.nonfinite, alias_of, list(axes), energy.measure(ts))


def inspect_module_of(structure: ModelStructure, state: ModelState, path: str, device: str,
                      counts: bool = True) -> ModuleInfo:
    """One module's report; ``counts=False`` leaves zeros and NaN/Inf at 0 (nothing is read)."""
    slot = structure.modules[path]
    layout = state.layouts.get(path) or slot.layout()
    names = {local: structure.slots[(path, local)] for local in slot.params if local not in slot.empty}
    hooked = set(layout.hooks)
    prunings = {local: state.tensors[names[local]].pruning for local in layout.hooks}
    parameters = []
    for pname in layout.params:
        local = pname[: -len("_orig")] if pname.endswith("_orig") and pname[: -len("_orig")] in hooked else pname
        if local in slot.empty:
            continue
        values = state.tensors[names[local]].values
        parameters.append(ParameterInfo(pname, list(values.shape), _dtype(values.dtype), device, values.numel,
                                        slot.requires_grad.get(local, False)))
    own = {b.name: b for b in slot.buffers}
    buffers = []
    for bname in layout.buffers:
        base = bname[: -len("_mask")]
        pruning = prunings.get(base) if bname.endswith("_mask") else None
        if pruning is not None:
            buffers.append(BufferInfo(bname, list(pruning.mask.shape), _dtype(pruning.mask_dtype), device,
                                      pruning.mask.numel, True))
        elif own[bname].tensor is not None:
            b = own[bname]
            assert b.tensor is not None
            buffers.append(BufferInfo(bname, list(b.tensor.shape), _dtype(b.tensor.dtype), str(b.tensor.device),
                                      b.tensor.numel(), b.persistent))
    tensors = []
    for local in layout.forward_names(slot.empty):
        canonical = names[local]
        ts = state.tensors[canonical]
        alias = canonical if canonical != qualify(path, local) else None
        pruned = local in hooked or (alias is not None and ts.pruned)
        axes = structure.tensors[canonical].axes
        if counts:
            tensors.append(tensor_stats(local, ts, pruned, alias, axes))
        else:
            tensors.append(TensorStats(local, list(ts.values.shape), _dtype(ts.values.dtype), ts.numel, 0, pruned,
                                       0, alias, list(axes)))
    hooks = module_hook_infos(slot, {k: v for k, v in prunings.items() if v is not None}, layout.hooks)
    return ModuleInfo(path, slot.type_name, slot.inferred, parameters, buffers, hooks, tensors)


def add_nm_compliance(report: ModelReport, doc: Document, keep: int, group: int) -> None:
    """Set ``nm_compliance`` on every tensor of ``report`` that has an input axis whose size ``group`` divides (one
    read of each, its forward values: ``X_orig * X_mask`` for a pruned tensor)."""
    state = doc.state
    report.nm = f"{keep}:{group}"
    for module in report.modules:
        for stats in module.tensors:
            name = stats.alias_of or qualify(module.name, stats.name)
            axes = doc.structure.tensors[name].axes
            if "in" not in axes or stats.shape[axes.index("in")] % group:
                continue
            stats.nm_compliance = compliance(state.tensors[name].effective(), keep, group, axes.index("in"))


def inspect_document(doc: Document, counts: bool = True) -> ModelReport:
    """A full report of the document's model (modules in ``named_modules`` order, the root named ``""``)."""
    state, device = doc.state, str(doc.device)
    modules = [inspect_module_of(doc.structure, state, path, device, counts) for path in doc.structure.modules]
    return ModelReport(doc.source.to_json(), modules, doc.structure.tied())


# -- from a module in torch's form -----------------------------------------------------------------------------------
def module_hooks(module: nn.Module) -> list[HookInfo]:
    """Every hook on ``module``; pruning hooks are decoded into their ordered methods and settings."""
    found: list[HookInfo] = []
    for kind, attr in HOOK_DICTS.items():
        for hook in getattr(module, attr, {}).values():
            if isinstance(hook, prune.BasePruningMethod):
                found.append(HookInfo(kind, type(hook).__name__, hook._tensor_name, method_history(hook)))
            else:
                inner = getattr(hook, "hook", None)
                target = inner if callable(inner) else hook
                found.append(HookInfo(kind, getattr(target, "__qualname__", None) or type(target).__name__))
    return found


def inspect_model(model: nn.Module, source: dict[str, Any] | None = None) -> ModelReport:
    """A full report of a module in torch's form (modules in ``named_modules`` order, the root named ``""``)."""
    modules = []
    for name, module in model.named_modules():
        hooks = pruning_hooks(module)
        tensors = []
        for local in forward_tensor_names(module):
            tensor = getattr(module, local).detach()
            counts = scan(tensor)
            tensors.append(TensorStats(local, list(tensor.shape), _dtype(tensor.dtype), tensor.numel(),
                                       counts.zeros, local in hooks, counts.nonfinite))
        modules.append(ModuleInfo(
            name=name, type=type_names(module)[0], inferred=hasattr(module, "kind"),
            parameters=[ParameterInfo(n, list(p.shape), _dtype(p.dtype), str(p.device), p.numel(), p.requires_grad)
                        for n, p in module._parameters.items() if p is not None],
            buffers=[BufferInfo(n, list(b.shape), _dtype(b.dtype), str(b.device), b.numel(),
                                n not in module._non_persistent_buffers_set)
                     for n, b in module._buffers.items() if b is not None],
            hooks=module_hooks(module), tensors=tensors,
        ))
    return ModelReport(source or {}, modules)
