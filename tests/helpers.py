"""Test helpers: exact (bitwise) snapshots of a model's whole pruning state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparsegui.core.pruned import method_history, pruning_hooks


def bits(tensor: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor, so -0.0 vs 0.0 and NaN payloads count as differences."""
    t = tensor.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8) if t.numel() else t.reshape(-1).to(torch.uint8)


def assert_same_tensors(
    got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor], *, ordered: bool = True
) -> None:
    """Same keys (in the same order unless ``ordered`` is False), same dtypes and shapes, same bytes."""
    if ordered:
        assert list(got) == list(want)
    else:
        assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert got[key].shape == want[key].shape, key
        assert torch.equal(bits(got[key]), bits(want[key])), key


def full_state(model: nn.Module) -> dict[str, Any]:
    """Every parameter, buffer, plain tensor attribute and pruning hook of every module, copied."""
    state: dict[str, Any] = {}
    for name, module in model.named_modules():
        state[name] = {
            "parameters": [(k, str(p.dtype), tuple(p.shape), bits(p).clone()) for k, p in module._parameters.items()
                           if p is not None],
            "buffers": [(k, str(b.dtype), tuple(b.shape), bits(b).clone()) for k, b in module._buffers.items()
                        if b is not None],
            "attrs": {k: bits(v).clone() for k, v in vars(module).items() if isinstance(v, torch.Tensor)},
            "hooks": [(t, type(h).__name__, method_history(h)) for t, h in pruning_hooks(module).items()],
            "n_pre_hooks": len(module._forward_pre_hooks),
        }
    return state


def assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Assert two :func:`full_state` results are identical bit for bit."""
    assert a.keys() == b.keys()
    for name in a:
        ma, mb = a[name], b[name]
        for key in ("parameters", "buffers"):
            assert [x[:3] for x in ma[key]] == [x[:3] for x in mb[key]], (name, key)
            for x, y in zip(ma[key], mb[key], strict=True):
                assert torch.equal(x[3], y[3]), (name, key, x[0])
        assert ma["attrs"].keys() == mb["attrs"].keys(), (name, "attrs")
        for k in ma["attrs"]:
            assert torch.equal(ma["attrs"][k], mb["attrs"][k]), (name, k)
        assert ma["hooks"] == mb["hooks"], (name, "hooks")
        assert ma["n_pre_hooks"] == mb["n_pre_hooks"], (name, "pre-hooks")
