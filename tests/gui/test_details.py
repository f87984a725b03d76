"""The details view: what the tutorial prints by hand, for the selected module, tensor, buffer or hook."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QTextBrowser
from torch import nn

from sparsegui.core.document import Document
from sparsegui.core.loading import LoadedModel
from sparsegui.core.loading.source import SourceInfo
from sparsegui.gui.details import DetailsView
from sparsegui.gui.session import Selection, Session


@pytest.fixture
def session(qapp) -> Session:
    return Session(Document.demo("lenet"))


@pytest.fixture
def view(qtbot, session) -> DetailsView:
    details = DetailsView(session)
    qtbot.addWidget(details)
    return details


def prune_conv1(session: Session) -> None:
    """The three prunes of the screenshots: random 30% and ln_structured 50% on weight, l1 3 entries on bias."""
    doc = session.document
    doc.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    doc.prune("l1_unstructured", ["conv1.bias"], amount=3)
    doc.prune("ln_structured", ["conv1.weight"], amount=0.5, n=2, dim=0)
    session.state_changed()


def in_order(text: str, *parts: str) -> bool:
    positions = [text.find(p) for p in parts]
    return -1 not in positions and positions == sorted(positions)


def test_browser_has_an_object_name(view):
    assert view.findChild(QTextBrowser, "detailsBrowser") is view.browser


def test_nothing_selected_describes_the_whole_model(view):
    text = view.text()
    assert "LeNet" in text and "60,074 parameters" in text
    assert in_order(text, "Submodules", "conv1", "conv2", "fc1", "fc2", "fc3")


def test_module_lists_parameters_buffers_and_hooks_in_order(view, session):
    prune_conv1(session)
    session.select([Selection("module", "conv1")])
    text = view.text()
    assert in_order(text, "named_parameters", "weight_orig", "bias_orig")
    assert in_order(text, "named_buffers", "weight_mask", "bias_mask")
    assert "requires_grad" in text and "persistent" in text
    assert in_order(text, "Hooks", "L1Unstructured", "3 entries", "PruningContainer", "RandomUnstructured",
                    "0.3 (30%)", "LnStructured", "0.5 (50%)")
    assert "61.1%" in text  # conv1.weight: 33 of 54 zero
    assert "60.0% (36 of 60 zero)" in text


def test_tensor_shows_shape_dtype_device_zeros_and_sparsity(view, session):
    session.document.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    session.state_changed()
    session.select([Selection("tensor", "conv1.weight")])
    text = view.text()
    for part in ("conv1.weight", "tensor, pruned", "6×1×3×3", "float32", "cpu", "54", "16", "29.6%",
                 "the forward uses weight_orig × weight_mask", "16 of 54 entries removed", "RandomUnstructured"):
        assert part in text, part


def test_tensor_and_module_show_norm_removed(view, session):
    doc = session.document
    weight = doc.model.fc2.weight.detach().clone()
    doc.prune("l1_unstructured", ["fc2.weight"], amount=0.5)
    session.state_changed()
    effective = doc.model.fc2.weight.detach()
    removed = torch.linalg.vector_norm((weight - effective).double())
    expected = float(removed / torch.linalg.vector_norm(weight.double()))
    session.select([Selection("tensor", "fc2.weight")])
    assert f"\nnorm removed\n{expected * 100:.1f}%\n" in view.text()
    session.select([Selection("module", "fc2")])
    module = session.totals.module_norm_removed("fc2")
    assert module is not None and 0 < module < expected
    assert f"norm removed {module * 100:.1f}%" in view.text()


def test_unpruned_tensor_says_so(view, session):
    session.select([Selection("tensor", "fc1.bias")])
    text = view.text()
    assert "fc1.bias" in text and "120" in text and "0.0%" in text
    assert "\npruned\nno\n" in text  # plain text puts each table cell on its own line


def test_buffers_say_whether_they_are_persistent(qtbot):
    model = nn.Module()
    model.register_buffer("kept", torch.zeros(3))
    model.register_buffer("scratch", torch.ones(2), persistent=False)
    session = Session(Document(LoadedModel(model, SourceInfo(format="demo"))))
    details = DetailsView(session)
    qtbot.addWidget(details)
    session.select([Selection("buffer", "scratch")])
    assert "\npersistent\nno\n" in details.text()
    session.select([Selection("buffer", "kept")])
    assert "\npersistent\nyes\n" in details.text() and "100.0%" in details.text()  # all three entries are zero


def test_hook_shows_its_methods_in_order(view, session):
    prune_conv1(session)
    session.select([Selection("hook", "conv1", 1)])
    text = view.text()
    assert "PruningContainer" in text and "forward_pre hook" in text
    assert in_order(text, "Pruning history", "RandomUnstructured", "LnStructured")


def test_updates_when_the_model_changes(view, session):
    session.select([Selection("tensor", "conv1.weight")])
    assert "0.0%" in view.text()
    session.document.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    session.state_changed()
    assert "29.6%" in view.text()
    session.document.undo()
    session.state_changed()
    assert "29.6%" not in view.text() and "0.0%" in view.text()


def test_gone_item_is_reported_not_raised(view, session):
    session.document.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    session.select([Selection("buffer", "conv1.weight_mask")])
    session.document.undo()
    session.state_changed()
    assert "no longer exists" in view.text()


def test_links_select_items(view, session):
    session.select([Selection("module", "conv1")])
    view.browser.anchorClicked.emit(QUrl("select:tensor/0/conv1.weight"))
    assert session.selection == [Selection("tensor", "conv1.weight")]


def test_several_selected_shows_the_first(view, session):
    session.select([Selection("module", "fc2"), Selection("module", "fc3")])
    text = view.text()
    assert text.startswith("fc2") and "2 items selected" in text
