"""The PyTorch pruning tutorial's custom method, shipped as the worked example of a SparseGUI plugin.

A plugin is any :class:`torch.nn.utils.prune.BasePruningMethod` subclass. Install it through the entry-point group
``sparsegui.pruning_methods`` (see this package's ``pyproject.toml``: ``foobar = "sparsegui.plugins.foobar:
FooBarPruningMethod"``), name it as ``package.module:ClassName``, or pick its ``.py`` file in the app. Settings named
``amount``, ``n`` or ``dim`` in ``__init__`` are offered like the built-ins'; a class attribute ``RANDOM = True``
makes SparseGUI record a seed for it.
"""

from __future__ import annotations

import torch
from torch.nn.utils import prune


class FooBarPruningMethod(prune.BasePruningMethod):
    """Prune every other entry in a tensor."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        mask = default_mask.clone()
        mask.view(-1)[::2] = 0
        return mask


def foobar_unstructured(module: torch.nn.Module, name: str) -> torch.nn.Module:
    """Prune ``name`` of ``module`` with :class:`FooBarPruningMethod`, as the tutorial's functional wrapper does."""
    FooBarPruningMethod.apply(module, name)
    return module
