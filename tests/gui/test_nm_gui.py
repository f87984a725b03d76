"""N:M in the app: the Prune panel applies nm_unstructured, the mask view shows groups over N, Details says
compliance and which 2:4 kernels a weight is eligible for."""

from __future__ import annotations

import torch

from sparsegui.core.nm import compliance
from sparsegui.gui.session import Selection
from tests.gui.test_main_window import apply, select, set_method


def test_the_panel_prunes_n_of_m_and_undo_takes_it_back(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = window.prune_panel
    select(window, "fc1.weight", "fc2.weight")
    set_method(window, "nm_unstructured")
    assert panel.keep.isEnabled() and panel.group.isEnabled() and not panel.amount.isEnabled()
    assert "input axis" in panel.dim_meaning.text() and "nothing faster or smaller" in panel.dim_meaning.text()
    panel.keep.setValue(1)
    apply(window, qtbot)
    model = window.session.document.model
    assert compliance(model.fc1.weight, 1, 4, 1) == 1.0
    assert float(model.fc1.weight_mask.mean()) == 0.25
    assert window.session.document.recipe()["steps"][-1]["keep"] == 1
    window.controller.undo()
    assert not hasattr(window.session.document.model.fc1, "weight_mask")


def test_a_group_that_does_not_divide_the_input_axis_is_explained(window) -> None:  # type: ignore[no-untyped-def]
    panel = window.prune_panel
    select(window, "fc3.weight")  # 10 × 84
    set_method(window, "nm_unstructured")
    panel.group.setValue(8)
    assert not panel.apply_button.isEnabled()
    assert "84 entries along dim 1 (its input axis) are not a multiple of the group size 8" in panel.problem.text()


def test_mask_view_shows_groups_over_n_and_details_the_kernels(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    doc = window.session.document
    doc.prune("l1_unstructured", ["fc2.weight"], amount=0.5)
    window.session.state_changed()
    window.session.select([Selection("tensor", "fc2.weight")])
    view = window.mask_view
    view.set_mode("nm")
    expected = compliance(doc.model.fc2.weight, 2, 4, 1)
    assert view.nm is not None and abs(view.nm.compliance - expected) < 1e-12
    assert f"{expected:.2%} compliant" in view.title
    bad = (doc.model.fc2.weight != 0).reshape(84, 30, 4).sum(-1) > 2
    image = torch.from_numpy(view.rendered.image).reshape(84, 30, 4)
    assert torch.equal(image[..., 0] == 1, bad)
    view.nm_combo.setCurrentText("1:4")
    assert "1:4 groups" in view.title
    window.session.select([Selection("tensor", "fc2.bias")])
    assert "input axis" in view.title
    window.session.select([Selection("tensor", "fc2.weight")])
    text = window.details.text()
    assert f"{expected:.2%} of groups along dim 1" in text
    assert "✗ NVIDIA 2:4 (ModelOpt, TensorRT): 84 out × 120 in" in text
