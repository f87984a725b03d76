"""Big models stay responsive: rows are built lazily, zeros are counted once per tensor in the background (never
on the UI thread), an operation and undo/redo count nothing they can derive from masks, and big tensors are
histogrammed off the UI thread."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from sparsegui.core import state as state_module
from sparsegui.core.document import Document
from sparsegui.core.loading import LoadedModel
from sparsegui.core.loading.source import SourceInfo
from sparsegui.core.progress import CancelToken
from sparsegui.core.stats import Totals
from sparsegui.core.steps import PruneStep
from sparsegui.gui.charts import BACKGROUND_LIMIT
from sparsegui.gui.session import Selection, Session
from sparsegui.gui.tree_model import ModuleTreeModel

BLOCKS = 1500  # 3,001 modules, 6,000 tensors


def many_modules() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(BLOCKS)])


def document_of(model: nn.Module) -> Document:
    return Document(LoadedModel(model, SourceInfo(format="demo")))


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Every tensor read to count its zeros, in any thread, as (entries, whether on the UI thread)."""
    calls: list[tuple[int, bool]] = []
    real = state_module.scan

    def scan(tensor: torch.Tensor, cancel: CancelToken | None = None) -> state_module.Scan:
        calls.append((tensor.numel(), threading.current_thread() is threading.main_thread()))
        return real(tensor, cancel)

    monkeypatch.setattr(state_module, "scan", scan)
    return calls


@pytest.fixture
def big_window(window, qtbot):  # type: ignore[no-untyped-def]
    """The main window on a model with thousands of modules, every view drawn once."""
    window.session.replace_document(document_of(many_modules()))
    window.controller.counter.restart()
    qtbot.waitUntil(lambda: not window.refresh_pending() and not window.controller.counter.running, timeout=10000)
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


def test_counts_live_on_states_and_survive_operations() -> None:
    """Counted once, a tensor's zeros stay known: an operation makes a new state for its targets only, and the
    pruned target's zeros come from its mask (its values hold no zeros and no NaN)."""
    doc = document_of(many_modules())
    totals = Totals(doc.structure, doc.state)
    assert totals.total.numel == BLOCKS * 20 and totals.total.zeros is None
    doc.scan()
    before = doc.state
    doc.prune("l1_unstructured", ["3.0.weight"], amount=0.25)
    assert doc.state.changed_since(before) == ["3.0.weight"]
    totals = Totals(doc.structure, doc.state)
    assert totals.total.zeros == 4 and totals.module("3").zeros == 4 and totals.module("4").zeros == 0


def test_prune_counts_nothing_and_updates_one_module(big_window, qtbot, counted) -> None:
    """After pruning one tensor of 6,000 nothing is read to count (the mask says it all) and the UI thread never
    counts; the tree updates the rows of that one module without a reset."""
    window = big_window
    session = window.session
    tree = window.tree
    tree.view.expand(tree.proxy.index(0, 0))
    session.select([Selection("module", "")])
    built = tree.model.created_nodes
    resets: list[bool] = []
    tree.model.modelReset.connect(lambda: resets.append(True))
    counted.clear()
    assert window.controller.prune(PruneStep("l1_unstructured", ("1234.0.weight",), amount=0.5))
    qtbot.waitUntil(lambda: not session.busy and session.document.history.can_undo, timeout=5000)
    qtbot.waitUntil(lambda: not window.refresh_pending() and not window.controller.counter.running, timeout=5000)
    assert counted == []
    assert not resets
    assert tree.model.created_nodes - built < 10  # the pruned module's rows only, not 3,000 modules' again
    index = window.sparsity_chart.names.index("1234.0.weight")
    assert window.sparsity_chart.heights[index] == pytest.approx(0.5)
    assert "(8 of 30,000 zero)" in window.details.text()  # the root page, from the kept totals


def test_counting_happens_off_the_ui_thread(window, qtbot, counted, monkeypatch) -> None:
    """Opening a model shows it at once; its zeros are counted in the background, never on the UI thread (a model
    too big to count in a few milliseconds: here every model is)."""
    monkeypatch.setattr("sparsegui.gui.session.SMALL", 0)
    window.session.replace_document(document_of(many_modules()))
    window.controller.counter.restart()
    qtbot.waitUntil(lambda: window.session.totals.total.zeros is not None, timeout=10000)
    assert counted and not any(ui for _, ui in counted)
    assert window.session.totals.total.zeros == 0


def test_undo_and_redo_count_nothing(big_window, qtbot, counted) -> None:
    """Undo brings back the state from before the operation and redo the one after, with their counts: no tensor
    is counted."""
    window = big_window
    session = window.session
    window.controller.prune(PruneStep("l1_unstructured", ("7.0.weight", "8.0.weight"), amount=0.25))
    qtbot.waitUntil(lambda: not session.busy and session.document.history.can_undo, timeout=5000)
    assert session.totals.module("").zeros == 8
    counted.clear()
    window.controller.undo()
    assert session.totals.module("").zeros == 0
    assert window.sparsity_chart.heights.max() == 0
    window.controller.redo()
    assert session.totals.module("").zeros == 8
    assert counted == []


def test_big_tensor_histogram_is_computed_off_the_ui_thread(window, qtbot) -> None:
    """Selecting a tensor of more than a million entries returns at once; its histogram arrives a moment later."""
    model = nn.Sequential(nn.Linear(1100, 1000))
    assert model[0].weight.numel() > BACKGROUND_LIMIT
    window.session.replace_document(document_of(model))
    window.session.document.prune("l1_unstructured", ["0.weight"], amount=0.3)
    window.session.state_changed()
    window.session.select([Selection("tensor", "0.weight")])
    assert window.refresh_pending() and window.histogram.counts.size == 0
    assert window.mask_view.rendered is not None  # the mask does not wait for the histogram
    qtbot.waitUntil(lambda: not window.refresh_pending(), timeout=5000)
    assert window.histogram.counts.sum() > 0
    assert "330,000 of 1,100,000 pruned" in window.histogram.info_label.text()
    assert window.histogram.threshold is not None
