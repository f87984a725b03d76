"""The module tree: its item model (rows, laziness, in-place refresh) and the widget around it (filter, selection
sync, context-menu requests)."""

from __future__ import annotations

import time

import pytest
import torch
from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPersistentModelIndex
from torch import nn

from sparsegui.core.document import Document
from sparsegui.core.loading import LoadedModel
from sparsegui.core.loading.source import SourceInfo
from sparsegui.gui.module_tree import ModuleTreeWidget
from sparsegui.gui.session import Selection, Session
from sparsegui.gui.tree_model import (
    DEVICE,
    KIND_ROLE,
    NAME,
    NORM,
    SPARSITY,
    SPARSITY_ROLE,
    TYPE,
    ModuleTreeModel,
)

FIRST_TENSOR = {"lenet": "conv1.weight", "resnet": "layer1.0.conv1.weight", "transformer": "head.weight"}


def session_for(model: nn.Module) -> Session:
    return Session(Document(LoadedModel(model, SourceInfo(format="demo"))))


def children(model: ModuleTreeModel, parent: QModelIndex) -> dict[str, QModelIndex]:
    """Name column text → index of each child row."""
    rows = [model.index(r, NAME, parent) for r in range(model.rowCount(parent))]
    return {model.data(index): index for index in rows}


def text(model: ModuleTreeModel, selection: Selection, column: int) -> str:
    return model.data(model.index_for(selection, column))


@pytest.fixture
def session(qapp) -> Session:
    return Session(Document.demo("lenet"))


@pytest.mark.parametrize("demo", ["lenet", "resnet", "transformer"])
def test_model_passes_qt_model_tester_before_and_after_pruning(qtmodeltester, demo):
    """Qt's model tester finds nothing wrong, and keeps checking while pruning and undo insert and remove rows."""
    session = Session(Document.demo(demo))
    model = ModuleTreeModel(session)
    qtmodeltester.check(model)
    session.document.prune("random_unstructured", [FIRST_TENSOR[demo]], amount=0.3, seed=0)
    session.state_changed()
    qtmodeltester.check(model)
    session.document.prune("ln_structured", [FIRST_TENSOR[demo]], amount=0.5, n=2, dim=0)
    session.state_changed()
    qtmodeltester.check(model)
    session.document.undo()
    session.document.undo()
    session.state_changed()
    qtmodeltester.check(model)


def test_rows_of_a_module(session):
    """Root row is the model's class; under a module: child modules, forward tensors, buffers, hooks."""
    model = ModuleTreeModel(session)
    root = model.index(0, 0)
    assert model.rowCount() == 1 and model.data(root) == "LeNet"
    assert list(children(model, root)) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    conv1 = model.index_for(Selection("module", "conv1"))
    assert list(children(model, conv1)) == ["weight", "bias"]
    assert model.data(conv1.siblingAtColumn(TYPE)) == "Conv2d"
    assert model.data(conv1.siblingAtColumn(2)) == "60 params"
    assert text(model, Selection("tensor", "conv1.weight"), 2) == "6×1×3×3"
    assert text(model, Selection("tensor", "conv1.weight"), DEVICE) == "cpu"
    assert text(model, Selection("tensor", "conv1.weight"), NORM) == "0.0%"


def test_the_norm_removed_column_shows_tensors_and_modules(session):
    """‖W ⊙ (1 − M)‖ / ‖W‖ for the pruned tensor and, over all its tensors, for its module and the root."""
    from sparsegui.core.energy import measure

    model = ModuleTreeModel(session)
    model.rowCount(model.index_for(Selection("module", "fc1")))
    session.document.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    session.state_changed()
    value = measure(session.state.tensors["fc1.weight"]).norm_removed
    totals = session.totals
    assert text(model, Selection("tensor", "fc1.weight"), NORM) == f"{value * 100:.1f}%"
    assert text(model, Selection("module", "fc1"), NORM) == f"{totals.module_norm_removed('fc1') * 100:.1f}%"
    assert 0 < totals.module_norm_removed("") < totals.module_norm_removed("fc1") < value
    assert text(model, Selection("tensor", "fc2.weight"), NORM) == "0.0%"


def test_pruned_tensor_shows_orig_mask_and_hook(session):
    """After pruning conv1.weight, conv1 shows weight (pruned) with weight_orig and weight_mask, and the hook."""
    model = ModuleTreeModel(session)
    conv1 = model.index_for(Selection("module", "conv1"))
    model.rowCount(conv1)  # built before the change, so the change is an in-place refresh
    session.document.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    session.state_changed()
    rows = children(model, conv1)
    assert list(rows) == ["bias", "weight", "forward_pre (weight): RandomUnstructured(amount=0.3)"]
    weight = rows["weight"]
    assert model.data(weight.siblingAtColumn(TYPE)) == "tensor, pruned"
    assert list(children(model, weight)) == ["weight_orig", "weight_mask"]
    assert model.data(weight.siblingAtColumn(SPARSITY)) == "29.6%"
    assert model.data(weight.siblingAtColumn(SPARSITY), SPARSITY_ROLE) == pytest.approx(16 / 54)
    assert text(model, Selection("buffer", "conv1.weight_mask"), SPARSITY) == "29.6%"
    assert text(model, Selection("parameter", "conv1.weight_orig"), TYPE) == "parameter (raw)"
    assert model.selection_for(rows["weight"]) == Selection("tensor", "conv1.weight")


def test_undo_brings_the_tree_back(session):
    model = ModuleTreeModel(session)
    conv1 = QPersistentModelIndex(model.index_for(Selection("module", "conv1")))
    before = list(children(model, QModelIndex(conv1)))
    session.document.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    session.state_changed()
    session.document.undo()
    session.state_changed()
    assert conv1.isValid()
    assert list(children(model, QModelIndex(conv1))) == before
    assert text(model, Selection("tensor", "conv1.weight"), SPARSITY) == "0.0%"
    assert not model.index_for(Selection("buffer", "conv1.weight_mask")).isValid()


def test_refresh_keeps_rows_in_place(session, qtbot):
    """A change updates rows without resetting the model: indexes of untouched rows stay valid."""
    model = ModuleTreeModel(session)
    fc1 = QPersistentModelIndex(model.index_for(Selection("tensor", "fc1.weight")))
    resets = []
    model.modelReset.connect(lambda: resets.append(1))
    session.document.prune("l1_unstructured", ["fc1.weight", "conv1.weight"], amount=0.5)
    session.state_changed()
    assert resets == []
    assert fc1.isValid() and model.selection_for(QModelIndex(fc1)) == Selection("tensor", "fc1.weight")
    assert model.data(QModelIndex(fc1).siblingAtColumn(SPARSITY)) == "50.0%"
    assert text(model, Selection("module", ""), SPARSITY) == f"{(24000 + 27) / 60074 * 100:.1f}%"


def test_container_hook_lists_methods_in_order(session):
    model = ModuleTreeModel(session)
    doc = session.document
    doc.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    doc.prune("l1_unstructured", ["conv1.bias"], amount=3)
    doc.prune("ln_structured", ["conv1.weight"], amount=0.5, n=2, dim=0)
    session.state_changed()
    rows = children(model, model.index_for(Selection("module", "conv1"))).values()
    hooks = [model.data(i) for i in rows if model.data(i, KIND_ROLE) == "hook"]
    assert hooks == ["forward_pre (bias): L1Unstructured(amount=3)",
                     "forward_pre (weight): PruningContainer → RandomUnstructured(amount=0.3), "
                     "LnStructured(amount=0.5, n=2, dim=0)"]


def test_selection_for_and_index_for_round_trip(qapp):
    session = Session(Document.demo("resnet"))
    session.document.prune("random_unstructured", ["layer1.0.conv1.weight"], amount=0.3, seed=0)
    model = ModuleTreeModel(session)
    pending, seen = [QModelIndex()], set()
    while pending:
        parent = pending.pop()
        for row in range(model.rowCount(parent)):
            index = model.index(row, 0, parent)
            selection = model.selection_for(index)
            assert model.index_for(selection) == index
            seen.add(selection.kind)
            pending.append(index)
    assert seen == {"module", "tensor", "parameter", "buffer", "hook"}
    assert not model.index_for(Selection("tensor", "nope.weight")).isValid()


def test_document_replaced_resets(session, qtbot):
    model = ModuleTreeModel(session)
    with qtbot.waitSignal(model.modelReset, timeout=1000):
        session.replace_document(Document.demo("resnet"))
    assert model.data(model.index(0, 0)) == "TinyResNet"


def test_ten_thousand_modules_build_lazily(qapp):
    """Opening a model with 10,000 modules creates only the rows asked for, not their tensors."""
    session = session_for(nn.Sequential(*[nn.Linear(2, 2) for _ in range(10_000)]))
    start = time.perf_counter()
    model = ModuleTreeModel(session)
    root = model.index(0, 0)
    assert model.rowCount(root) == 10_000
    assert model.hasChildren(model.index(0, 0, root))
    assert time.perf_counter() - start < 1.0
    assert model.created_nodes == 10_001  # the root and its 10,000 children; no tensor rows yet
    index = model.index_for(Selection("tensor", "9999.weight"))
    assert model.data(index) == "weight" and model.created_nodes == 10_003


# -- the widget -------------------------------------------------------------------------------------------------------
@pytest.fixture
def widget(qtbot, session) -> ModuleTreeWidget:
    tree = ModuleTreeWidget(session)
    qtbot.addWidget(tree)
    tree.resize(700, 500)
    return tree


def visible_modules(tree: ModuleTreeWidget) -> set[str]:
    names, pending = set(), [QModelIndex()]
    while pending:
        parent = pending.pop()
        for row in range(tree.proxy.rowCount(parent)):
            index = tree.proxy.index(row, 0, parent)
            selection = tree.model.selection_for(tree.proxy.mapToSource(index))
            if selection.kind == "module":
                names.add(selection.name)
            pending.append(index)
    return names


def test_widget_has_named_parts(widget):
    assert widget.findChild(type(widget.view), "moduleTree") is widget.view
    assert widget.filter_edit.objectName() == "moduleFilter"
    assert widget.view.selectionMode() == widget.view.SelectionMode.ExtendedSelection


def test_filter_finds_modules_by_name_and_type(widget, qtbot):
    qtbot.keyClicks(widget.filter_edit, "fc")
    qtbot.waitUntil(lambda: widget.proxy.matches == {"fc1", "fc2", "fc3"}, timeout=2000)
    assert visible_modules(widget) == {"", "fc1", "fc2", "fc3"}
    widget.filter_edit.setText("linear")
    widget.apply_filter()
    assert visible_modules(widget) == {"", "fc1", "fc2", "fc3"}
    widget.filter_edit.clear()
    widget.apply_filter()
    assert visible_modules(widget) == {"", "conv1", "conv2", "fc1", "fc2", "fc3"}


def test_filter_by_type_in_a_deep_model(qtbot):
    session = Session(Document.demo("transformer"))
    tree = ModuleTreeWidget(session)
    qtbot.addWidget(tree)
    tree.filter_edit.setText("Linear")
    tree.apply_filter()
    shown = visible_modules(tree)
    assert {"head", "encoder.layers.0.linear1", "encoder.layers.1.self_attn.out_proj"} <= shown
    assert "norm" not in shown and "tok_embed" not in shown
    out_proj = tree.proxy.mapFromSource(tree.model.index_for(Selection("module", "encoder.layers.0.self_attn")))
    assert tree.view.isExpanded(out_proj)  # matches are revealed


def test_selecting_rows_selects_in_session(widget):
    model, proxy = widget.model, widget.proxy
    conv1 = proxy.mapFromSource(model.index_for(Selection("module", "conv1")))
    fc1 = proxy.mapFromSource(model.index_for(Selection("tensor", "fc1.weight")))
    flags = QItemSelectionModel.SelectionFlag
    widget.view.selectionModel().setCurrentIndex(conv1, flags.ClearAndSelect | flags.Rows)
    assert widget.session.selection == [Selection("module", "conv1")]
    widget.view.selectionModel().select(fc1, flags.Select | flags.Rows)
    assert widget.session.selection == [Selection("module", "conv1"), Selection("tensor", "fc1.weight")]


def test_session_selection_selects_expands_and_scrolls(qtbot):
    session = Session(Document.demo("resnet"))
    tree = ModuleTreeWidget(session)
    qtbot.addWidget(tree)
    target = Selection("tensor", "layer2.0.downsample.0.weight")
    session.select([target])
    rows = tree.view.selectionModel().selectedRows()
    assert [tree.model.selection_for(tree.proxy.mapToSource(r)) for r in rows] == [target]
    parent = tree.proxy.mapFromSource(tree.model.index_for(Selection("module", "layer2.0.downsample.0")))
    assert tree.view.isExpanded(parent) and tree.view.isExpanded(parent.parent())
    assert session.selection == [target]  # no echo


def test_selection_and_expansion_survive_pruning(widget):
    session, model, proxy = widget.session, widget.model, widget.proxy
    session.select([Selection("tensor", "conv1.weight")])
    conv1 = QPersistentModelIndex(proxy.mapFromSource(model.index_for(Selection("module", "conv1"))))
    assert widget.view.isExpanded(QModelIndex(conv1))
    session.document.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    session.state_changed()
    assert session.selection == [Selection("tensor", "conv1.weight")]
    assert widget.view.isExpanded(QModelIndex(conv1))
    rows = widget.view.selectionModel().selectedRows()
    assert [model.selection_for(proxy.mapToSource(r)) for r in rows] == [Selection("tensor", "conv1.weight")]
    session.select([Selection("buffer", "conv1.weight_mask")])
    session.document.undo()
    session.state_changed()
    assert session.selection == []  # the mask is gone


def test_context_menu_actions_emit_requests(widget, qtbot):
    session = widget.session
    session.select([Selection("module", "conv1")])
    assert not widget.remove_action.isEnabled() and not widget.show_mask_action.isEnabled()
    with qtbot.waitSignal(widget.prune_requested, timeout=1000) as prune:
        widget.prune_action.trigger()
    assert prune.args == [["conv1.weight", "conv1.bias"]]
    session.document.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    session.state_changed()
    session.select([Selection("buffer", "conv1.weight_mask")])
    assert widget.remove_action.isEnabled() and widget.undo_action.isEnabled()
    with qtbot.waitSignal(widget.remove_requested, timeout=1000) as remove:
        widget.remove_action.trigger()
    assert remove.args == [["conv1.weight"]]
    with qtbot.waitSignal(widget.show_mask_requested, timeout=1000) as show:
        widget.show_mask_action.trigger()
    assert show.args == ["conv1.weight"]
    with qtbot.waitSignal(widget.undo_requested, timeout=1000):
        widget.undo_action.trigger()
    session.set_busy(True)
    assert not widget.prune_action.isEnabled() and not widget.undo_action.isEnabled()


def test_widget_on_ten_thousand_modules_opens_quickly(qtbot):
    session = session_for(nn.Sequential(*[nn.Linear(2, 2) for _ in range(10_000)]))
    start = time.perf_counter()
    tree = ModuleTreeWidget(session)
    qtbot.addWidget(tree)
    tree.show()
    qtbot.waitExposed(tree)
    assert time.perf_counter() - start < 3.0
    assert tree.model.created_nodes <= 10_001 + 64  # only what is on screen beyond the top level
    session.select([Selection("tensor", "9876.bias")])
    assert tree.view.selectionModel().selectedRows()[0].data() == "bias"


def test_odd_modules_pass_the_model_tester(qtmodeltester, qapp):
    """Root-level parameters, a ``None`` child, a non-persistent buffer, a plain hook and an empty module."""
    model = nn.Module()
    model.scale = nn.Parameter(torch.ones(3))
    model.register_module("missing", None)
    model.register_buffer("scratch", torch.zeros(2), persistent=False)
    model.empty = nn.ReLU()
    model.head = nn.Linear(3, 2)
    model.head.register_forward_hook(lambda *_: None)
    session = session_for(model)
    tree = ModuleTreeModel(session)
    qtmodeltester.check(tree)
    assert list(children(tree, tree.index(0, 0)))[:2] == ["empty", "head"]
    assert text(tree, Selection("buffer", "scratch"), TYPE) == "buffer, non-persistent"
    assert not tree.hasChildren(tree.index_for(Selection("module", "empty")))
    assert text(tree, Selection("hook", "head", 0), NAME).endswith("<lambda>")
    session.document.prune("l1_unstructured", ["scale"], amount=1)
    session.state_changed()
    qtmodeltester.check(tree)
    assert text(tree, Selection("tensor", "scale"), SPARSITY) == "33.3%"


def test_filtered_proxy_passes_the_model_tester(qtbot, qtmodeltester):
    session = Session(Document.demo("resnet"))
    tree = ModuleTreeWidget(session)
    qtbot.addWidget(tree)
    tree.filter_edit.setText("bn")
    tree.apply_filter()
    qtmodeltester.check(tree.proxy)
    session.document.prune("random_unstructured", ["layer1.0.bn1.weight"], amount=0.3, seed=0)
    session.state_changed()
    qtmodeltester.check(tree.proxy)
    assert "layer1.0.conv1" not in visible_modules(tree) and "layer1.0.bn1" in visible_modules(tree)


def test_operations_keep_expansion_selection_and_scroll(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    """Pruning, undo and redo through the window keep what the user opened, selected and scrolled to."""
    from sparsegui.core.steps import PruneStep

    tree = window.tree
    window.session.replace_document(Document.demo("resnet"))
    opened = [p for p in window.session.document.structure.modules if p and not p.startswith("layer3")]
    for path in opened:
        tree.view.expand(tree.proxy.mapFromSource(tree.model.module_index(path)))
    window.session.select([Selection("tensor", "layer2.0.conv1.weight")])
    bar = tree.view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 4, timeout=5000)
    bar.setValue(bar.maximum() // 2)
    qtbot.wait(50)
    scroll = bar.value()
    assert scroll > 0

    def expanded() -> list[str]:
        return [p for p in opened if tree.view.isExpanded(tree.proxy.mapFromSource(tree.model.module_index(p)))]

    for action in ("prune", "undo", "redo"):
        if action == "prune":
            window.controller.prune(PruneStep("l1_unstructured", ("layer2.0.conv1.weight", "layer1.0.conv1.weight"),
                                              amount=0.5))
            qtbot.waitUntil(lambda: window.session.document.history.index == 1 and not window.session.busy,
                            timeout=20000)
        else:
            getattr(window.controller, action)()
        qtbot.wait(50)
        assert expanded() == opened, action
        assert window.session.selection == [Selection("tensor", "layer2.0.conv1.weight")], action
        assert [tree.model.selection_for(i) for i in tree._source_rows()] == [Selection("tensor",
                                                                                        "layer2.0.conv1.weight")]
        assert bar.value() == scroll, action
