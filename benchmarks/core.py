"""One measurement of the core, in its own process: ``python -m benchmarks.core TASK SIDE CHECKPOINT DEVICE``.

SIDE is ``torch`` (the plain ``torch.nn.utils.prune`` way, as the tutorial writes it) or ``sparsegui`` (the
:class:`~sparsegui.core.document.Document` the CLI and the app drive). Both sides start from the same state —
the checkpoint memory-mapped into a GPT-2-shaped module tree, every weight read once so it is resident — and the
task alone is timed. The last line printed is a JSON object: ``{"seconds": …, "extra_bytes": …}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from benchmarks.memory import Measurement, measure
from benchmarks.models import build_on_meta, prunable
from sparsegui.core import fastprune
from sparsegui.core.document import Document

TASKS = ("open", "global_l1", "l1_each", "ln_structured", "remove", "export", "undo")
AMOUNT = 0.5


def _touch(model: nn.Module) -> None:
    for tensor in model.state_dict().values():  # reading every entry makes memory-mapped pages resident
        tensor.sum()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class _Torch:
    """The plain way: a module tree, the state_dict loaded into it, ``torch.nn.utils.prune`` calls."""

    def __init__(self, path: Path, device: str) -> None:
        self.path, self.device = path, device

    def load(self) -> None:
        state = torch.load(self.path, mmap=True, weights_only=True)
        self.model = self._model(state)

    def _model(self, state: dict[str, torch.Tensor]) -> nn.Module:
        from benchmarks.models import SIZES

        config = next(c for c in SIZES.values() if self.path.stem == f"gpt2-{c.name}")
        model = build_on_meta(config)
        model.load_state_dict(state, assign=True)
        return model.to(self.device)

    @property
    def pairs(self) -> list[tuple[nn.Module, str]]:
        return prunable(self.model)

    def open(self) -> None:
        self.model = self._model(torch.load(self.path, weights_only=True))

    def global_l1(self) -> None:
        prune.global_unstructured(self.pairs, pruning_method=prune.L1Unstructured, amount=AMOUNT)

    def l1_each(self) -> None:
        for module, name in self.pairs:
            prune.l1_unstructured(module, name, amount=AMOUNT)

    def ln_structured(self) -> None:
        for module, name in self.pairs:
            prune.ln_structured(module, name, amount=AMOUNT, n=2, dim=0)

    def prepare_pruned(self) -> None:
        for module, name in self.pairs:  # the same state as prune.l1_unstructured leaves, made quickly
            fastprune.l1_unstructured(module, name, AMOUNT)

    def remove(self) -> None:
        for module, name in self.pairs:
            prune.remove(module, name)

    def export(self) -> None:
        self.remove()
        with tempfile.TemporaryDirectory(dir=self.path.parent) as folder:
            torch.save(self.model.state_dict(), Path(folder) / "pruned.pt")


class _SparseGUI:
    """The engine the app and the CLI drive, on the same checkpoint."""

    def __init__(self, path: Path, device: str) -> None:
        self.path, self.device = path, device

    def load(self) -> None:
        self.doc = Document.open(self.path)
        if self.device != "cpu":
            self.doc.move_to(self.device)
        self.model = self.doc.model
        self.targets = [f"{name}.weight" for name, module in self.model.named_modules()
                        if getattr(module, "weight", None) is not None and module.weight.dim() == 2]

    def open(self) -> None:
        self.load()

    def global_l1(self) -> None:
        self.doc.global_prune("l1_unstructured", self.targets, AMOUNT)

    def l1_each(self) -> None:
        self.doc.prune("l1_unstructured", self.targets, amount=AMOUNT)

    def ln_structured(self) -> None:
        self.doc.prune("ln_structured", self.targets, amount=AMOUNT, n=2, dim=0)

    def prepare_pruned(self) -> None:
        self.l1_each()

    def remove(self) -> None:
        self.doc.remove(self.targets)

    def export(self) -> None:
        with tempfile.TemporaryDirectory(dir=self.path.parent) as folder:
            self.doc.export(Path(folder) / "pruned.pt")

    def undo(self) -> None:
        self.doc.undo()


def run(task: str, side: str, path: Path, device: str) -> Measurement:
    impl: _Torch | _SparseGUI = (_Torch if side == "torch" else _SparseGUI)(path, device)
    if task != "open":
        impl.load()
        if task in ("remove", "export"):
            impl.prepare_pruned()
        elif task == "undo":
            assert isinstance(impl, _SparseGUI), "undo is SparseGUI's alone"
            impl.global_l1()
        _touch(impl.model)
    work: Callable[[], None] = getattr(impl, task)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with measure() as result:
        work()
        _sync(device)
    if device.startswith("cuda"):
        result.extra_bytes = torch.cuda.max_memory_allocated() - base
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("side", choices=("torch", "sparsegui"))
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("device", nargs="?", default="cpu")
    args = parser.parse_args()
    result = run(args.task, args.side, args.checkpoint, args.device)
    print(json.dumps({"seconds": result.seconds, "extra_bytes": result.extra_bytes}))


if __name__ == "__main__":
    main()
