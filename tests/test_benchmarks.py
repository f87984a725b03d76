"""The benchmark harness runs every task on both sides and both leave the model in the same state (on a tiny
GPT-2-shaped checkpoint; the figures themselves come from ``python -m benchmarks``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import core
from benchmarks.memory import measure
from benchmarks.models import SIZES, write_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(SIZES["tiny"], tmp_path_factory.mktemp("bench"))


@pytest.mark.parametrize("task", core.TASKS)
def test_every_task_runs_on_both_sides(task: str, checkpoint: Path) -> None:
    for side in ("torch", "sparsegui"):
        if task == "undo" and side == "torch":
            continue
        result = core.run(task, side, checkpoint, "cpu")
        assert result.seconds > 0 and result.extra_bytes >= 0


@pytest.mark.parametrize("task", ["global_l1", "l1_each", "ln_structured"])
def test_both_sides_prune_the_same(task: str, checkpoint: Path) -> None:
    plain, ours = core._Torch(checkpoint, "cpu"), core._SparseGUI(checkpoint, "cpu")
    for side in (plain, ours):
        side.load()
        getattr(side, task)()
    a, b = plain.model.state_dict(), ours.model.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_measure_sees_an_allocation() -> None:
    with measure() as result:
        block = torch.ones(64 * 2**20 // 4)  # 64 MB
    assert result.extra_bytes > 32 * 2**20 and float(block[0]) == 1.0
