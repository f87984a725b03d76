"""Computing an operation without changing anything: validate every target, then work out each target's next state.

Each function takes the model's :class:`~sparsegui.core.structure.ModelStructure` and current
:class:`~sparsegui.core.state.ModelState` and returns a :class:`Change` — the new states of the touched tensors and
the new layouts of their modules. Nothing the caller holds is modified, so this can run in a worker thread while
views read the current state; :meth:`~sparsegui.core.document.Document.commit` then applies the change.

The masks are torch's own: each target is put in torch's form on a throw-away module holding only that tensor
(:func:`~sparsegui.core.torchform.scratch_module`) and pruned by the very ``torch.nn.utils.prune`` function (or
plugin ``apply``) the user chose. L1 and random unstructured pruning of big tensors take the streaming paths of
:mod:`sparsegui.core.fastprune` instead, which give the same masks without torch's full-size temporaries.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils import prune

from sparsegui.core import fastprune
from sparsegui.core.amounts import check_amount_fits, check_amount_value, check_dim, check_n
from sparsegui.core.errors import LoadError, PruneError, SparseGUIError
from sparsegui.core.loading.masks import load_masks
from sparsegui.core.maskvalues import check_binary_mask
from sparsegui.core.methods import GLOBAL_METHODS, MethodSpec, resolve_method
from sparsegui.core.names import split
from sparsegui.core.nm import check_nm
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.state import Baked, ModelState, ModuleLayout, PackedCustomMask, Pruning, TensorState
from sparsegui.core.steps import GlobalStep, PruneStep, RemoveStep, Step, resolved
from sparsegui.core.structure import ModelStructure
from sparsegui.core.targets import resolve_targets
from sparsegui.core.torchform import capture, scratch_module

MaskSource = str | Path | Mapping[str, torch.Tensor] | torch.Tensor | None
MAX_SEED = 2**64 - 1
"""torch.manual_seed takes 0 … 2**64 − 1."""


@dataclass
class Change:
    """An operation worked out but not applied: the step as history records it, the state it was computed from and
    the new states of the tensors it touches (canonical names, in the order they were pruned)."""

    step: Step
    base: ModelState
    tensors: dict[str, TensorState]
    layouts: dict[str, ModuleLayout]
    after: ModelState = field(init=False)

    def __post_init__(self) -> None:
        self.after = self.base.with_changes(self.tensors, self.layouts)

    @property
    def label(self) -> str:
        return self.step.label()

    @property
    def touched(self) -> list[str]:
        return list(self.tensors)


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's generators for the block only (the global random state is left as it was)."""
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def prune_settings(spec: MethodSpec, amount: object = None, n: object = None, dim: object = None,
                   params: Mapping[str, Any] | None = None, keep: object = None, group: object = None
                   ) -> dict[str, Any]:
    """Check the settings a method takes and return its keyword arguments (no tensor needed yet)."""
    kwargs: dict[str, Any] = {}
    if spec.takes_nm:
        try:
            kwargs["keep"], kwargs["group"] = check_nm(2 if keep is None else keep, 4 if group is None else group)
        except ValueError as exc:
            raise PruneError(f"{spec.name}: {exc}") from exc
        if dim is not None:
            if isinstance(dim, bool) or not isinstance(dim, int):
                raise PruneError(f"dim={dim!r} must be an integer")
            kwargs["dim"] = dim
    elif keep is not None or group is not None:
        raise PruneError(f"{spec.name} takes no keep or group (those are for nm_unstructured)")
    if spec.takes_amount:
        if amount is None:
            raise PruneError(f"{spec.name} needs an amount (a fraction such as 0.3, or a count such as 3)")
        kwargs["amount"] = check_amount_value(amount)
    elif amount is not None:
        raise PruneError(f"{spec.name} takes no amount (got amount={amount!r})")
    if spec.takes_n:
        if n is None:
            raise PruneError(f"{spec.name} needs n, the order of the norm (e.g. 1, 2 or 'inf')")
        kwargs["n"] = check_n(n)
    if spec.takes_nm:
        pass
    elif spec.takes_dim:
        if dim is None:
            raise PruneError(f"{spec.name} needs dim, the dimension whose channels are pruned")
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise PruneError(f"dim={dim!r} must be an integer")
        kwargs["dim"] = dim
    for key, value in (params or {}).items():
        if key not in spec.extra_params:
            raise PruneError(f"{spec.name} has no setting {key!r}")
        kwargs[key] = value
    return kwargs


PRUNABLE_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
"""The dtypes torch's pruning methods compute on (float8 and others torch only stores are shown and exported)."""


def validate_target(name: str, ts: TensorState, kwargs: Mapping[str, Any]) -> None:
    """Refuse settings that cannot apply to this tensor, naming the value and the tensor."""
    dtype = ts.values.dtype
    if dtype not in PRUNABLE_DTYPES:
        raise PruneError(f"{name} is {str(dtype).removeprefix('torch.')}: torch cannot compute masks on it; it is "
                         "shown and exported unchanged, not pruned")
    shape = ts.values.shape
    n = kwargs.get("n")
    if n in ("fro", "nuc") and len(shape) - 1 not in ((1, 2) if n == "fro" else (2,)):
        need = "2-D or 3-D" if n == "fro" else "3-D"
        raise PruneError(f"n={n!r} needs a {need} tensor (a matrix norm over the dims other than dim); {name} is "
                         f"{len(shape)}-D")
    if "group" in kwargs:
        dim = check_dim(kwargs["dim"], shape, name)
        if shape[dim] % kwargs["group"]:
            raise PruneError(f"{name}: {shape[dim]} entries along dim {dim} (its input axis) are not a multiple "
                             f"of the group size {kwargs['group']}")
    elif "dim" in kwargs:
        dim = check_dim(kwargs["dim"], shape, name)
        if "amount" in kwargs:
            check_amount_fits(kwargs["amount"], shape[dim], f"channels along dim {dim} of {name}")
    elif "amount" in kwargs:
        if ts.pruning is not None:
            check_amount_fits(kwargs["amount"], ts.pruning.mask.kept, f"unpruned entries of {name}")
        else:
            check_amount_fits(kwargs["amount"], ts.numel, f"entries of {name}")


def _layouts(structure: ModelStructure, state: ModelState, names: Sequence[str], removing: bool = False
             ) -> dict[str, ModuleLayout]:
    layouts: dict[str, ModuleLayout] = {}
    for name in names:
        slot = structure.tensors[name]
        layout = layouts.get(slot.module) or state.layouts.get(slot.module) or structure.modules[slot.module].layout()
        if removing:
            layouts[slot.module] = layout.removed(slot.local)
        else:
            layouts[slot.module] = layout.pruned(slot.local, first=state.tensors[name].pruning is None)
    return layouts


def _failure(what: str, name: str, exc: Exception) -> SparseGUIError:
    if isinstance(exc, SparseGUIError):
        return exc
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PruneError(f"{what} failed on {name}; nothing changed ({type(exc).__name__}: {detail})")


# -- per-tensor pruning ----------------------------------------------------------------------------------------------
def _apply(spec: MethodSpec, module: torch.nn.Module, local: str, kwargs: Mapping[str, Any],
           mask: torch.Tensor | None) -> None:
    """Prune one tensor through torch's functional API (built-ins) or ``cls.apply`` (plugins)."""
    if spec.name == "custom_from_mask":
        assert mask is not None
        prune.custom_from_mask(module, local, mask)
    elif spec.origin == "torch":
        getattr(prune, spec.name)(module, local, **kwargs)
    else:
        spec.cls.apply(module, local, **kwargs)


def _fast(spec: MethodSpec, values: torch.Tensor) -> str | None:
    if spec.origin != "torch":
        return None
    if spec.cls is prune.L1Unstructured and fastprune.supports([values]):
        return "l1"
    if spec.cls is prune.RandomUnstructured and fastprune.supports([values], random=True):
        return "random"
    return None


def prune_one(name: str, ts: TensorState, spec: MethodSpec, kwargs: Mapping[str, Any],
              mask: torch.Tensor | None = None) -> TensorState:
    """The state of tensor ``name`` after ``prune.<spec>(…)`` on it; ``ts`` is left as it is."""
    values = ts.values.tensor()
    fast = _fast(spec, values)
    if fast is not None:
        entry = fastprune.Entry(values.contiguous(), None if ts.pruning is None else ts.pruning.mask)
        select = fastprune.l1_masks if fast == "l1" else fastprune.random_masks
        bits = select([entry], kwargs["amount"])[0]
        method = (prune.L1Unstructured if fast == "l1" else prune.RandomUnstructured)(kwargs["amount"])
        prior = ts.pruning.methods if ts.pruning is not None else ()
        return TensorState(ts.values, Pruning(bits, values.dtype, (*prior, method)))
    local = split(name)[1]
    # torch's methods call .view(-1), and checkpoints hold non-contiguous tensors: give them a contiguous copy
    module = scratch_module(local, ts, values.contiguous())
    try:
        _apply(spec, module, local, kwargs, mask)
        return capture(module, local, ts, name)
    except Exception as exc:
        raise _failure(spec.name, name, exc) from exc


@dataclass
class Checked:
    """A step checked against a state: its method (per-tensor steps), keyword arguments and target names."""

    spec: MethodSpec | None
    kwargs: dict[str, Any]
    names: list[str]


def check_step(structure: ModelStructure, state: ModelState, step: Step, *, has_mask: bool = False,
               base_dir: Path | None = None) -> Checked:
    """Everything that can be checked without computing a mask (the one validator: the Prune panel calls it on
    every change, planning calls it first). ``has_mask``: a mask is given besides ``step.mask``."""
    if isinstance(step, RemoveStep):
        return Checked(None, {}, resolve_targets(structure, state, step.targets, step.types, pruned_only=True))
    if step.seed is not None and (isinstance(step.seed, bool) or not isinstance(step.seed, int)
                                  or not 0 <= step.seed <= MAX_SEED):
        raise PruneError(f"seed={step.seed!r} must be a whole number from 0 to {MAX_SEED}")
    if isinstance(step, GlobalStep):
        if step.method not in GLOBAL_METHODS:
            raise PruneError(f"global pruning method {step.method!r} must be one of: {', '.join(GLOBAL_METHODS)}")
        value = check_amount_value(step.amount)
        names = resolve_targets(structure, state, step.targets, step.types)
        check_amount_fits(value, sum(state.tensors[n].numel for n in names), "entries in the chosen tensors")
        devices = {state.tensors[n].values.device for n in names}
        if len(devices) > 1:
            raise PruneError(f"global pruning needs all tensors on one device (found {sorted(map(str, devices))})")
        return Checked(None, {"amount": value}, names)
    spec = resolve_method(step.method, base_dir)
    kwargs = prune_settings(spec, step.amount, step.n, step.dim, step.params, step.keep, step.group)
    names = resolve_targets(structure, state, step.targets, step.types)
    for name in names:
        validate_target(name, state.tensors[name], target_settings(structure, name, spec, kwargs))
    if spec.takes_mask and not has_mask and not step.mask:
        raise PruneError("custom_from_mask needs a mask (a file or a tensor)")
    if not spec.takes_mask and (has_mask or step.mask is not None):
        raise PruneError(f"{spec.name} takes no mask")
    return Checked(spec, kwargs, names)


def target_settings(structure: ModelStructure, name: str, spec: MethodSpec, kwargs: dict[str, Any]
                    ) -> dict[str, Any]:
    """``kwargs`` for tensor ``name``: an N:M method without a dim groups along the tensor's input axis."""
    if not spec.takes_nm or "dim" in kwargs:
        return kwargs
    axes = structure.tensors[name].axes
    if "in" not in axes:
        known = ", ".join(a or "?" for a in axes) or "none"
        raise PruneError(f"{name}: its input axis is unknown (axes: {known}); give dim to say along which dim the "
                         f"groups run")
    return {**kwargs, "dim": list(axes).index("in")}


def plan_prune(structure: ModelStructure, state: ModelState, step: PruneStep, masks: MaskSource = None,
               base_dir: Path | None = None, device: torch.device | None = None,
               progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Change:
    """Prune each target with ``step.method``. Nothing changes unless every target validates and prunes."""
    checked = check_step(structure, state, step, has_mask=masks is not None, base_dir=base_dir)
    spec, kwargs, names = checked.spec, checked.kwargs, checked.names
    assert spec is not None
    given: dict[str, torch.Tensor] = {}
    mask_path = None
    if spec.takes_mask:
        source: MaskSource = masks if masks is not None else step.mask
        given = _masks_for(structure, state, names, source, base_dir)
        if isinstance(source, (str, Path)):
            mask_path = str((Path(source) if base_dir is None else base_dir / source).resolve())
    seed = step.seed
    if seed is None and spec.seeded:
        seed = secrets.randbelow(2**31)
    tensors: dict[str, TensorState] = {}
    with seeded(seed, device or torch.device("cpu")):
        for i, name in enumerate(names):
            check(cancel)
            report(progress, i / len(names), f"{spec.name} {name}")
            ts = state.tensors[name]
            mask = given.get(name)
            if mask is not None:
                mask = mask.to(device=ts.values.device)
            tensors[name] = prune_one(name, ts, spec, target_settings(structure, name, spec, kwargs), mask)
    report(progress, 1.0, "done")
    nm = {"keep": kwargs["keep"], "group": kwargs["group"]} if spec.takes_nm else {}
    record = resolved(step, names, method=spec.name, seed=seed, mask=mask_path, params=dict(step.params), **nm)
    return Change(record, state, tensors, _layouts(structure, state, names))


def _masks_for(structure: ModelStructure, state: ModelState, names: Sequence[str], mask: MaskSource,
               base_dir: Path | None) -> dict[str, torch.Tensor]:
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
        if len(names) != 1:
            raise PruneError("a single mask tensor can only prune one target; use a dict keyed by tensor name")
        loaded = {names[0]: loaded[""]}
    by_canonical = {structure.canonical.get(key, key): value for key, value in loaded.items()}
    for name in names:
        if name not in by_canonical:
            raise PruneError(f"the mask file has no mask for {name}")
        tensor = by_canonical[name]
        shape = state.tensors[name].values.shape
        if tuple(tensor.shape) != shape:
            raise PruneError(f"mask for {name} has shape {list(tensor.shape)}, the tensor has {list(shape)}")
        check_binary_mask(name, tensor)
    return by_canonical


# -- global pruning --------------------------------------------------------------------------------------------------
def plan_global(structure: ModelStructure, state: ModelState, step: GlobalStep, device: torch.device | None = None,
                progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Change:
    """``prune.global_unstructured`` over the targets: one threshold (or one random draw) for all of them."""
    checked = check_step(structure, state, step)
    names, value = checked.names, checked.kwargs["amount"]
    states = [state.tensors[n] for n in names]
    values = [ts.values.tensor() for ts in states]
    seed = step.seed
    random = step.method == "random_unstructured"
    if seed is None and random:
        seed = secrets.randbelow(2**31)
    check(cancel)
    report(progress, 0.0, f"global {step.method} over {len(names)} tensors")
    with seeded(seed, device or torch.device("cpu")):
        if fastprune.supports(values, random=random):
            tensors = _global_fast(names, states, values, value, random, progress, cancel)
        else:
            tensors = _global_torch(names, states, GLOBAL_METHODS[step.method], value)  # type: ignore[type-abstract]
    report(progress, 1.0, "done")
    return Change(resolved(step, names, seed=seed), state, tensors, _layouts(structure, state, names))


def _global_fast(names: Sequence[str], states: Sequence[TensorState], values: Sequence[torch.Tensor],
                 amount: float | int, random: bool, progress: ProgressCallback | None,
                 cancel: CancelToken | None) -> dict[str, TensorState]:
    entries = [fastprune.Entry(v.contiguous(), None if ts.pruning is None else ts.pruning.mask)
               for v, ts in zip(values, states, strict=True)]
    select = fastprune.random_masks if random else fastprune.l1_masks
    masks = select(entries, amount, progress, cancel)
    dtype = reduce(torch.promote_types, [v.dtype for v in values])
    tensors = {}
    for name, ts, v, bits in zip(names, states, values, masks, strict=True):
        prior = ts.pruning.methods if ts.pruning is not None else ()
        tensors[name] = TensorState(ts.values, Pruning(bits, v.dtype, (*prior, PackedCustomMask(bits, dtype))))
    return tensors


def _global_torch(names: Sequence[str], states: Sequence[TensorState], cls: type[prune.BasePruningMethod],
                  amount: float | int) -> dict[str, TensorState]:
    pairs = [(scratch_module(split(name)[1], ts, ts.values.tensor().contiguous()), split(name)[1])
             for name, ts in zip(names, states, strict=True)]
    try:
        prune.global_unstructured(pairs, pruning_method=cls, amount=amount)
        return {name: capture(module, local, ts, name)
                for (module, local), name, ts in zip(pairs, names, states, strict=True)}
    except Exception as exc:
        raise _failure(f"global {cls.__name__}", f"{len(names)} tensors", exc) from exc


# -- remove ----------------------------------------------------------------------------------------------------------
def plan_remove(structure: ModelStructure, state: ModelState, step: RemoveStep,
                progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Change:
    """``prune.remove`` each pruned target: ``X`` becomes a plain tensor holding ``X_orig * X_mask`` for good."""
    names = check_step(structure, state, step).names
    tensors = {}
    for i, name in enumerate(names):
        check(cancel)
        report(progress, i / len(names), f"remove {name}")
        ts = state.tensors[name]
        assert ts.pruning is not None
        tensors[name] = TensorState(Baked(ts.values, ts.pruning.mask))
    report(progress, 1.0, "done")
    return Change(resolved(step, names), state, tensors, _layouts(structure, state, names, removing=True))
