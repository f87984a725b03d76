"""Between SparseGUI's lean state and torch's own pruning form (``X_orig``, ``X_mask``, hook, ``X``).

- :func:`scratch_module` puts one tensor in torch's form on a throw-away module, so that torch's own functions
  (``prune.l1_unstructured``, a plugin's ``apply``, ``global_unstructured``…) compute the next mask exactly as they
  would on the real model; :func:`capture` reads the result back as a :class:`~sparsegui.core.state.TensorState`.
- :func:`materialize_module` gives a module of the real model torch's form for a state (what ``Document.model``
  hands out); :func:`dereparametrize` turns a module that arrives in torch's form (a pruned pickled model, saved
  masks) back into plain tensors plus a state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core.bitmask import BitMask
from sparsegui.core.errors import PruneError
from sparsegui.core.state import MethodEntry, ModuleLayout, PackedCustomMask, Pruning, TensorState


def pruning_hooks(module: nn.Module) -> dict[str, prune.BasePruningMethod]:
    """The pruning hooks of a torch-form ``module`` keyed by the tensor they reparametrize, in registration order."""
    hooks: dict[str, prune.BasePruningMethod] = {}
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod) and getattr(hook, "_tensor_name", None) is not None:
            hooks[hook._tensor_name] = hook
    return hooks


def hook_object(local: str, entries: Sequence[MethodEntry], *, placeholders: bool = False,
                device: torch.device | None = None) -> prune.BasePruningMethod:
    """The forward-pre hook torch holds for these methods: the method itself, or a ``PruningContainer``.

    Packed ``CustomFromMask`` entries become real ones (their mask in its dtype on ``device``), or with
    ``placeholders`` ones whose mask is on the meta device (a container only keeps them; it computes with its last
    method)."""
    methods: list[prune.BasePruningMethod] = []
    for entry in entries:
        method = (entry.placeholder() if placeholders else entry.method(device)) \
            if isinstance(entry, PackedCustomMask) else entry
        method._tensor_name = local
        methods.append(method)
    if len(methods) == 1:
        return methods[0]
    container = prune.PruningContainer(methods[0])
    for method in methods[1:]:
        container.add_pruning_method(method)
    return container


def scratch_module(local: str, ts: TensorState, values: torch.Tensor | None = None) -> nn.Module:
    """A module holding only tensor ``local`` exactly as torch would hold it in state ``ts`` (its values shared, or
    ``values`` in their place)."""
    module = nn.Module()
    param = nn.Parameter(ts.values.tensor() if values is None else values, requires_grad=False)
    if ts.pruning is None:
        module.register_parameter(local, param)
        return module
    module.register_parameter(local + "_orig", param)
    module.register_buffer(local + "_mask", ts.pruning.mask.as_dtype(ts.pruning.mask_dtype, param.device))
    hook = hook_object(local, ts.pruning.methods, placeholders=True)
    module.register_forward_pre_hook(hook)
    setattr(module, local, hook.apply_mask(module))
    return module


def _entry(method: prune.BasePruningMethod, registered: BitMask, name: str) -> MethodEntry:
    if type(method) is prune.CustomFromMask and isinstance(getattr(method, "mask", None), torch.Tensor):
        bits = BitMask.from_tensor(method.mask.reshape(registered.shape), name)
        return PackedCustomMask(registered if bits.same_as(registered) else bits, method.mask.dtype)
    return method


def capture(module: nn.Module, local: str, before: TensorState, name: str) -> TensorState:
    """The state of ``local`` after torch pruned the scratch module; the values stay ``before``'s."""
    hook = pruning_hooks(module).get(local)
    mask = module._buffers.get(local + "_mask")
    if hook is None or mask is None:
        raise PruneError(f"the pruning method left {name} without a mask and a hook")
    if tuple(mask.shape) != before.values.shape:
        raise PruneError(f"the pruning method gave {name} a mask of shape {list(mask.shape)}, "
                         f"the tensor has {list(before.values.shape)}")
    bits = BitMask.from_tensor(mask, name)
    methods = tuple(hook._pruning_methods) if isinstance(hook, prune.PruningContainer) else (hook,)
    prior = before.pruning.methods if before.pruning is not None else ()
    entries = prior + tuple(_entry(m, bits, name) for m in methods[len(prior):])
    return TensorState(before.values, Pruning(bits, mask.dtype, entries))


# -- the real model in torch's form ----------------------------------------------------------------------------------
def materialize_module(module: nn.Module, layout: ModuleLayout, params: Mapping[str, nn.Parameter],
                       tensors: Mapping[str, TensorState], buffers: Mapping[str, torch.Tensor | None]) -> None:
    """Give ``module`` torch's form for ``layout``: ``params[local]`` is the parameter object of each local tensor
    (absent for a ``None`` parameter), ``tensors[local]`` its state and ``buffers`` its own (non-mask) buffers; its
    other hooks stay."""
    hooked = set(layout.hooks)
    for local in list(vars(module)):
        if isinstance(module.__dict__[local], torch.Tensor) and local in params:
            del module.__dict__[local]
    module._parameters.clear()
    for pname in layout.params:
        local = pname[: -len("_orig")] if pname.endswith("_orig") and pname[: -len("_orig")] in hooked else pname
        if local not in params:
            module._parameters[pname] = None
            continue
        param = params[local]
        values = tensors[local].values.tensor()
        if param.data is not values:
            param.data = values
        module._parameters[pname] = param
    module._buffers.clear()
    for bname in layout.buffers:
        base = bname[: -len("_mask")] if bname.endswith("_mask") else None
        if base is not None and base in hooked:
            pruning = tensors[base].pruning
            assert pruning is not None
            module._buffers[bname] = pruning.mask.as_dtype(pruning.mask_dtype, params[base].device)
        else:
            module._buffers[bname] = buffers[bname]
    _drop_pruning_hooks(module)
    for local in layout.hooks:
        pruning = tensors[local].pruning
        assert pruning is not None
        hook = hook_object(local, pruning.methods, device=params[local].device)
        module.register_forward_pre_hook(hook)
        module.__dict__[local] = hook.apply_mask(module)


def _drop_pruning_hooks(module: nn.Module) -> None:
    for key in [k for k, h in module._forward_pre_hooks.items() if isinstance(h, prune.BasePruningMethod)]:
        del module._forward_pre_hooks[key]


def dereparametrize(model: nn.Module) -> tuple[dict[tuple[str, str], Pruning], dict[str, ModuleLayout]]:
    """Turn every torch-form pruned tensor of ``model`` back into a plain parameter (the ``X_orig`` object, so ties
    survive); returns each one's :class:`Pruning` by (module path, local name) and the torch-form layouts."""
    prunings: dict[tuple[str, str], Pruning] = {}
    layouts: dict[str, ModuleLayout] = {}
    for path, module in model.named_modules():
        hooks = pruning_hooks(module)
        if not hooks:
            continue
        layouts[path] = ModuleLayout(tuple(k for k, v in module._parameters.items() if v is not None),
                                     tuple(k for k, v in module._buffers.items() if v is not None), tuple(hooks))
        for local, hook in hooks.items():
            name = f"{path}.{local}" if path else local
            mask = module._buffers[local + "_mask"]
            assert mask is not None
            bits = BitMask.from_tensor(mask, name)
            methods = tuple(hook._pruning_methods) if isinstance(hook, prune.PruningContainer) else (hook,)
            prunings[(path, local)] = Pruning(bits, mask.dtype, tuple(_entry(m, bits, name) for m in methods))
        params = dict(module._parameters)
        module._parameters.clear()
        for pname, param in params.items():
            base = pname[: -len("_orig")]
            module._parameters[base if pname.endswith("_orig") and base in hooks else pname] = param
        for local in hooks:
            del module._buffers[local + "_mask"]
            module.__dict__.pop(local, None)
        _drop_pruning_hooks(module)
    return prunings, layouts
