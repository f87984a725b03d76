"""Zero counts kept between operations, so that a big model is counted once and then only where it changed.

A :class:`SparsityStats` counts a tensor the first time someone asks and keeps the answer; module totals (the sum
over a module's subtree) are kept too. After an operation, :meth:`SparsityStats.invalidate` drops only what the
operation touched — the counts of the touched modules' tensors and the totals of those modules and their ancestors
— so the next read recounts those few tensors and nothing else. :func:`count_tensors` does the counting without
storing anything, so a worker thread can count right after an operation and hand the result to
:meth:`SparsityStats.store` on the UI thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import nn

from sparsegui.core.inspection import count_zeros
from sparsegui.core.pruned import forward_tensor_names, pruning_hooks

Key = tuple[str, str]  # (qualified module name, local tensor name)


@dataclass(frozen=True)
class Count:
    """Elements and zeros of a tensor or a subtree."""

    numel: int
    zeros: int

    @property
    def sparsity(self) -> float | None:
        return self.zeros / self.numel if self.numel else None

    def __add__(self, other: Count) -> Count:
        return Count(self.numel + other.numel, self.zeros + other.zeros)


EMPTY = Count(0, 0)


def split(qualname: str) -> Key:
    module, _, local = qualname.rpartition(".")
    return module, local


def ancestors(path: str) -> list[str]:
    """``"a.b.c"`` → ``["a.b.c", "a.b", "a", ""]``."""
    found = [path]
    while path:
        path = path.rpartition(".")[0]
        found.append(path)
    return found


def count_tensor(module: nn.Module, local: str) -> Count:
    """Count local tensor ``local`` of ``module`` (the effective ``X`` of a pruned ``X``, a raw ``X_orig``, a mask…)."""
    tensor = getattr(module, local)
    return Count(tensor.numel(), count_zeros(tensor.detach()))


def tensor_keys(model: nn.Module, qualnames: Iterable[str]) -> list[Key]:
    """What :meth:`SparsityStats.invalidate` forgets after an operation on ``qualnames``, to count again: every
    forward tensor of their modules and the mask of each pruned one."""
    keys: list[Key] = []
    for path in dict.fromkeys(split(q)[0] for q in qualnames):
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        hooks = pruning_hooks(module)
        for local in forward_tensor_names(module):
            keys.append((path, local))
            if local in hooks:
                keys.append((path, local + "_mask"))
    return keys


def forward_keys(model: nn.Module) -> list[Key]:
    """The key of every tensor a forward uses, in module order (what the views show totals of)."""
    return [(path, local) for path, module in model.named_modules() for local in forward_tensor_names(module)]


def count_tensors(model: nn.Module, keys: Iterable[Key]) -> dict[Key, Count]:
    """Count ``keys`` now, storing nothing (safe off the UI thread while nobody changes the model)."""
    counts = {}
    for path, local in keys:
        module = model.get_submodule(path)
        counts[(path, local)] = count_tensor(module, local)
    return counts


class SparsityStats:
    """Counts of ``model``'s tensors and module subtrees, computed on demand and kept until invalidated.

    ``counted`` says how many tensors were counted so far (tests check that an operation recounts only its targets).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.counted = 0
        self._tensors: dict[Key, Count] = {}
        self._modules: dict[str, Count] = {}

    def tensor(self, path: str, local: str, module: nn.Module | None = None) -> Count:
        """The count of local tensor ``local`` of the module at ``path`` (``module`` saves looking it up)."""
        key = (path, local)
        found = self._tensors.get(key)
        if found is None:
            module = self.model.get_submodule(path) if module is None else module
            found = self._tensors[key] = count_tensor(module, local)
            self.counted += 1
        return found

    def module(self, path: str, module: nn.Module | None = None) -> Count:
        """The sum over the forward tensors of the module at ``path`` and of every module below it."""
        found = self._modules.get(path)
        if found is None:
            module = self.model.get_submodule(path) if module is None else module
            found = EMPTY
            for local in forward_tensor_names(module):
                found += self.tensor(path, local, module)
            for name, child in module._modules.items():
                if child is not None:
                    found += self.module(f"{path}.{name}" if path else name, child)
            self._modules[path] = found
        return found

    def invalidate(self, qualnames: Iterable[str] | None = None) -> None:
        """Forget what an operation on tensors ``qualnames`` may have changed (everything when None): the counts of
        every tensor of their modules (an undo restores whole modules) and the totals of those modules' ancestors."""
        if qualnames is None:
            self._tensors.clear()
            self._modules.clear()
            return
        paths = {split(q)[0] for q in qualnames}
        if not paths:
            return
        self._tensors = {k: v for k, v in self._tensors.items() if k[0] not in paths}
        for path in paths:
            for above in ancestors(path):
                self._modules.pop(above, None)

    def known(self, qualnames: Iterable[str]) -> dict[Key, Count]:
        """The counts held now for the modules of tensors ``qualnames`` (what :meth:`invalidate` would drop), so
        that an undo can put them back instead of counting again."""
        paths = {split(q)[0] for q in qualnames}
        return {k: v for k, v in self._tensors.items() if k[0] in paths}

    def store(self, counts: Mapping[Key, Count]) -> None:
        """Keep counts made elsewhere (by :func:`count_tensors` in a worker), after :meth:`invalidate`."""
        self._tensors.update(counts)
