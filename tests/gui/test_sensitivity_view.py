"""The Sensitivity tab: a scan runs as a job and changes nothing, a cell previews its prune, a plan applies as one
undoable step that reaches its target exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparsegui.core.sensitivity import scan
from sparsegui.gui.session import Selection
from tests.helpers import assert_same_state, full_state


def run_scan(window, qtbot, targets: str = "*.weight") -> None:  # type: ignore[no-untyped-def]
    view = window.sensitivity_view
    view.targets.setText(targets)
    view.levels.setText("0.2,0.5,0.8")
    view.run_button.click()
    qtbot.waitUntil(lambda: not window.controller.busy and view.result is not None, timeout=30000)
    assert window.shown_errors == []


def test_a_scan_shows_what_the_core_computes_and_changes_nothing(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    doc = window.session.document
    before, history = full_state(doc.model), doc.history.index
    run_scan(window, qtbot)
    view = window.sensitivity_view
    expected = scan(doc, ["*.weight"], [0.2, 0.5, 0.8])
    assert view.result.to_json() == expected.to_json()
    assert view.image.image.shape == (5, 3)
    assert_same_state(full_state(doc.model), before)
    assert doc.history.index == history


def test_a_cell_previews_its_prune_without_applying_it(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    run_scan(window, qtbot)
    view, mask_view = window.sensitivity_view, window.mask_view
    row = [c.name for c in view.result.curves].index("fc2.weight")
    assert view.preview_cell(row, 1)
    assert window.tabs.currentWidget() is mask_view
    assert mask_view.title.startswith("Preview, not applied — l1_unstructured 0.5 on fc2.weight")
    assert float(mask_view.rendered.image.mean()) == pytest.approx(0.5, abs=1e-3)
    assert window.session.state.tensors["fc2.weight"].pruning is None
    window.session.select([Selection("tensor", "fc1.weight")])
    assert not mask_view.title.startswith("Preview")


def test_the_plan_applies_as_one_step_and_hits_the_target(window, qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_scan(window, qtbot)
    view = window.sensitivity_view
    view.target.setValue(40.0)
    plan = view.make_plan()
    assert plan is not None and plan.planned_signal <= plan.uniform_signal
    assert view.apply_button.isEnabled()
    index = window.session.document.history.index
    view.apply_button.click()
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=30000)
    doc = window.session.document
    assert doc.history.index == index + 1
    total = sum(plan.numel.values())
    zeros = sum(int((doc.model.get_submodule(n.rsplit(".", 1)[0]).weight == 0).sum()) for n in plan.names)
    assert zeros == round(0.4 * total)
    assert view.plan is None  # the model changed: the old plan is gone
    window.controller.undo()
    assert all(doc.state.tensors[n].pruning is None for n in plan.names)


def test_csv_export_and_inputs(window, qtbot, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    view = window.sensitivity_view
    torch.save(torch.randn(2, 1, 28, 28), tmp_path / "x.pt")
    view.set_inputs(str(tmp_path / "x.pt"))
    run_scan(window, qtbot, "fc*.weight")
    assert view.result.signal == "output_drift"
    monkeypatch.setattr("sparsegui.gui.sensitivity_view.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "scan.csv"), ""))
    view.csv_button.click()
    lines = (tmp_path / "scan.csv").read_text().splitlines()
    assert lines[0] == "parameter,sparsity,output_drift" and len(lines) == 1 + 3 * 3
