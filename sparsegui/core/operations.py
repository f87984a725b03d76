"""The pruning operations themselves: validate every target first, then call ``torch.nn.utils.prune``.

These functions mutate the model; :class:`~sparsegui.core.document.Document` wraps them in snapshots so that a
failure, a cancel, undo and redo all restore the exact previous state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core import fastprune
from sparsegui.core.amounts import check_amount_fits, check_amount_value, check_dim, check_n
from sparsegui.core.errors import PruneError
from sparsegui.core.inspection import count_zeros
from sparsegui.core.methods import GLOBAL_METHODS, MethodSpec
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.pruned import current_mask, held_product, pruning_hooks
from sparsegui.core.targets import TensorRef


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


def target_tensor(module: nn.Module, name: str) -> torch.Tensor:
    """The tensor pruning acts on: the original values (``X_orig``) once pruned."""
    param = module._parameters.get(name + "_orig") if name in pruning_hooks(module) else None
    tensor = param if param is not None else getattr(module, name)
    assert isinstance(tensor, torch.Tensor)
    return tensor


def make_contiguous(module: nn.Module, name: str) -> None:
    """``l1_unstructured`` and friends call ``.view(-1)``; real checkpoints hold non-contiguous tensors.

    For a pruned tensor the mask buffer and the derived ``X = X_orig * X_mask`` must be contiguous too
    (``global_unstructured`` flattens both with ``parameters_to_vector``).
    """
    hook = pruning_hooks(module).get(name)
    key = name + "_orig" if hook is not None else name
    param = module._parameters.get(key)
    changed = False
    if param is not None and not param.is_contiguous():
        param.data = param.data.contiguous()
        changed = True
    if hook is not None:
        mask = module._buffers.get(name + "_mask")
        if mask is not None and not mask.is_contiguous():
            module._buffers[name + "_mask"] = mask.contiguous()
            changed = True
        derived = getattr(module, name, None)
        if changed or (isinstance(derived, torch.Tensor) and not derived.is_contiguous()):
            setattr(module, name, hook.apply_mask(module))


def prune_settings(
    spec: MethodSpec,
    amount: object = None,
    n: object = None,
    dim: object = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check the settings a method takes and return its keyword arguments (no tensor needed yet)."""
    kwargs: dict[str, Any] = {}
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
    if spec.takes_dim:
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


def validate_target(module: nn.Module, ref: TensorRef, spec: MethodSpec, kwargs: Mapping[str, Any]) -> None:
    """Refuse settings that cannot apply to this tensor, naming the value and the tensor."""
    tensor = target_tensor(module, ref.tensor)
    if "dim" in kwargs:
        dim = check_dim(kwargs["dim"], tensor, ref.qualname)
        if "amount" in kwargs:
            check_amount_fits(kwargs["amount"], tensor.shape[dim], f"channels along dim {dim} of {ref.qualname}")
    elif "amount" in kwargs:
        mask = current_mask(module, ref.tensor)
        remaining = mask.numel() - count_zeros(mask.detach()) if mask is not None else tensor.numel()
        what = f"unpruned entries of {ref.qualname}" if mask is not None else f"entries of {ref.qualname}"
        check_amount_fits(kwargs["amount"], remaining, what)


def apply_method(
    module: nn.Module, name: str, spec: MethodSpec, kwargs: Mapping[str, Any], mask: torch.Tensor | None
) -> None:
    """Prune one tensor through torch's functional API (built-ins) or ``cls.apply`` (plugins)."""
    make_contiguous(module, name)
    if spec.cls is prune.L1Unstructured and spec.origin == "torch" and fastprune.supports([getattr(module, name)]):
        fastprune.l1_unstructured(module, name, kwargs["amount"])
    elif spec.name == "custom_from_mask":
        assert mask is not None
        prune.custom_from_mask(module, name, mask)
    elif spec.origin == "torch":
        getattr(prune, spec.name)(module, name, **kwargs)
    else:
        spec.cls.apply(module, name, **kwargs)


def prune_each(
    modules: Mapping[str, nn.Module],
    refs: Sequence[TensorRef],
    spec: MethodSpec,
    kwargs: Mapping[str, Any],
    masks: Mapping[str, torch.Tensor] | None,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> None:
    for i, ref in enumerate(refs):
        check(cancel)
        report(progress, i / len(refs), f"{spec.name} {ref.qualname}")
        module = modules[ref.module]
        mask = None
        if masks is not None:
            mask = masks[ref.qualname].to(device=target_tensor(module, ref.tensor).device)
        apply_method(module, ref.tensor, spec, kwargs, mask)
    report(progress, 1.0, "done")


def validate_masks(
    modules: Mapping[str, nn.Module], refs: Sequence[TensorRef], masks: Mapping[str, torch.Tensor]
) -> None:
    for ref in refs:
        if ref.qualname not in masks:
            raise PruneError(f"the mask file has no mask for {ref.qualname}")
        tensor = target_tensor(modules[ref.module], ref.tensor)
        mask = masks[ref.qualname]
        if tuple(mask.shape) != tuple(tensor.shape):
            raise PruneError(
                f"mask for {ref.qualname} has shape {list(mask.shape)}, the tensor has {list(tensor.shape)}"
            )


def global_prune(
    modules: Mapping[str, nn.Module],
    refs: Sequence[TensorRef],
    method: str,
    amount: object,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> None:
    """``prune.global_unstructured`` over ``refs`` (one threshold for all of them)."""
    if method not in GLOBAL_METHODS:
        raise PruneError(f"global pruning method {method!r} must be one of: {', '.join(GLOBAL_METHODS)}")
    value = check_amount_value(amount)
    pairs = [(modules[r.module], r.tensor) for r in refs]
    total = sum(target_tensor(m, n).numel() for m, n in pairs)
    check_amount_fits(value, total, "entries in the chosen tensors")
    devices = {target_tensor(m, n).device for m, n in pairs}
    if len(devices) > 1:
        raise PruneError(f"global pruning needs all tensors on one device (found {sorted(map(str, devices))})")
    check(cancel)
    report(progress, 0.0, f"global {method} over {len(refs)} tensors")
    for module, name in pairs:
        make_contiguous(module, name)
    if method == "l1_unstructured" and fastprune.supports([getattr(m, n) for m, n in pairs]):
        fastprune.global_l1_unstructured(pairs, value, progress, cancel)
        return
    prune.global_unstructured(pairs, pruning_method=GLOBAL_METHODS[method], amount=value)
    report(progress, 1.0, "done")


def remove_each(
    modules: Mapping[str, nn.Module],
    refs: Sequence[TensorRef],
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> None:
    for i, ref in enumerate(refs):
        check(cancel)
        report(progress, i / len(refs), f"remove {ref.qualname}")
        remove_pruning(modules[ref.module], ref.tensor)
    report(progress, 1.0, "done")


def remove_pruning(module: nn.Module, name: str) -> None:
    """``prune.remove(module, name)``, without computing ``X_orig * X_mask`` a second time: the ``X`` the hook holds
    (:func:`~sparsegui.core.pruned.held_product`) becomes the parameter's data, as in torch. Without one, torch's
    own ``remove`` runs."""
    hook = pruning_hooks(module).get(name)
    held = held_product(module, name)
    orig = module._parameters.get(name + "_orig")
    if hook is None or held is None or orig is None:
        prune.remove(module, name)
        return
    key = next(k for k, h in module._forward_pre_hooks.items() if h is hook)
    delattr(module, name)
    orig.data = held.detach()
    del module._parameters[name + "_orig"]
    del module._buffers[name + "_mask"]
    setattr(module, name, orig)
    del module._forward_pre_hooks[key]
