"""Big models stay responsive: rows are built lazily, an operation recounts only the tensors it touched (in the
worker, not on the UI thread), undo and redo count nothing, and big tensors are histogrammed off the UI thread."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from sparsegui.core import stats as stats_module
from sparsegui.core.document import Document
from sparsegui.core.loading import LoadedModel
from sparsegui.core.loading.source import SourceInfo
from sparsegui.core.stats import SparsityStats
from sparsegui.gui.charts import BACKGROUND_LIMIT
from sparsegui.gui.controller import PruneRequest
from sparsegui.gui.session import Selection, Session
from sparsegui.gui.tree_model import ModuleTreeModel

BLOCKS = 1500  # 3,001 modules, 6,000 tensors


def many_modules() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(BLOCKS)])


def document_of(model: nn.Module) -> Document:
    return Document(LoadedModel(model, SourceInfo(format="demo")))


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[nn.Module, str, bool]]:
    """Every tensor counted, in any thread, as (module, tensor name, whether on the UI thread)."""
    calls: list[tuple[nn.Module, str, bool]] = []
    real = stats_module.count_tensor

    def count_tensor(module: nn.Module, local: str) -> stats_module.Count:
        calls.append((module, local, threading.current_thread() is threading.main_thread()))
        return real(module, local)

    monkeypatch.setattr(stats_module, "count_tensor", count_tensor)
    return calls


@pytest.fixture
def big_window(window, qtbot):  # type: ignore[no-untyped-def]
    """The main window on a model with thousands of modules, every view drawn once."""
    window.session.replace_document(document_of(many_modules()))
    qtbot.waitUntil(lambda: not window.refresh_pending(), timeout=5000)
    return window


def test_opening_thousands_of_modules_builds_only_the_top_level(qapp) -> None:
    """The tree makes rows for the root's children when asked, and no tensor rows at all before expansion."""
    session = Session(document_of(many_modules()))
    model = ModuleTreeModel(session)
    root = model.index(0, 0)
    assert model.rowCount(root) == BLOCKS
    assert model.created_nodes == BLOCKS + 1
    assert model.hasChildren(model.index(7, 0, root))
    assert model.created_nodes == BLOCKS + 1  # hasChildren answers without building


def test_stats_forget_only_what_an_operation_touched() -> None:
    """Invalidating one tensor drops its module's counts and its ancestors' totals; the rest stay counted."""
    model = many_modules()
    stats = SparsityStats(model)
    assert stats.module("").numel == BLOCKS * 20
    assert stats.counted == BLOCKS * 2
    with torch.no_grad():
        model[3][0].weight[0] = 0
    stats.invalidate(["3.0.weight"])
    assert stats.module("").zeros == 4
    assert stats.counted == BLOCKS * 2 + 2  # 3.0.weight and 3.0.bias, nothing else
    assert stats.module("3").zeros == 4 and stats.module("4").zeros == 0


def test_prune_recounts_only_its_target_and_not_on_the_ui_thread(big_window, qtbot, counted) -> None:
    """After pruning one tensor of 6,000, the worker counts that tensor and its mask; the UI thread counts nothing,
    and the tree updates the rows of that one module without a reset."""
    window = big_window
    session = window.session
    tree = window.tree
    tree.view.expand(tree.proxy.index(0, 0))
    session.select([Selection("module", "")])
    ui_counted = session.stats.counted
    built = tree.model.created_nodes
    resets: list[bool] = []
    tree.model.modelReset.connect(lambda: resets.append(True))
    counted.clear()
    assert window.controller.prune(PruneRequest("l1_unstructured", ["1234.0.weight"], amount=0.5))
    qtbot.waitUntil(lambda: not session.busy and session.document.history.can_undo, timeout=5000)
    qtbot.waitUntil(lambda: not window.refresh_pending(), timeout=5000)
    linear = session.document.model[1234][0]
    assert sorted((module is linear, local, ui) for module, local, ui in counted) == [
        (True, "bias", False), (True, "weight", False), (True, "weight_mask", False)]
    assert session.stats.counted == ui_counted
    assert not resets
    assert tree.model.created_nodes - built < 10  # the pruned module's rows only, not 3,000 modules' again
    index = window.sparsity_chart.names.index("1234.0.weight")
    assert window.sparsity_chart.heights[index] == pytest.approx(0.5)
    assert "(8 of 30,000 zero)" in window.details.text()  # the root page, from the kept totals


def test_undo_and_redo_count_nothing(big_window, qtbot, counted) -> None:
    """Undo puts back the counts from before the operation and redo those from after: no tensor is counted."""
    window = big_window
    session = window.session
    window.controller.prune(PruneRequest("l1_unstructured", ["7.0.weight", "8.0.weight"], amount=0.25))
    qtbot.waitUntil(lambda: not session.busy and session.document.history.can_undo, timeout=5000)
    assert session.stats.module("").zeros == 8
    counted.clear()
    window.controller.undo()
    assert session.stats.module("").zeros == 0
    assert window.sparsity_chart.heights.max() == 0
    window.controller.redo()
    assert session.stats.module("").zeros == 8
    assert counted == []


def test_big_tensor_histogram_is_computed_off_the_ui_thread(window, qtbot) -> None:
    """Selecting a tensor of more than a million entries returns at once; its histogram arrives a moment later."""
    model = nn.Sequential(nn.Linear(1100, 1000))
    assert model[0].weight.numel() > BACKGROUND_LIMIT
    window.session.replace_document(document_of(model))
    window.session.document.prune("l1_unstructured", ["0.weight"], amount=0.3)
    window.session.notify_changed(["0.weight"])
    window.session.select([Selection("tensor", "0.weight")])
    assert window.refresh_pending() and window.histogram.counts.size == 0
    assert window.mask_view.rendered is not None  # the mask does not wait for the histogram
    qtbot.waitUntil(lambda: not window.refresh_pending(), timeout=5000)
    assert window.histogram.counts.sum() > 0
    assert "330,000 of 1,100,000 pruned" in window.histogram.info_label.text()
    assert window.histogram.threshold is not None
