"""File ▸ Compare With…: the open model (as it is now) against another checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QAction

from sparsegui.core.document import Document
from sparsegui.gui.session import Selection


def test_compare_with_a_pruned_export(window, qtbot, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    other = Document.demo("lenet")
    other.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    path = other.export(tmp_path / "pruned.safetensors")
    window.session.document.prune("l1_unstructured", ["fc1.weight"], amount=0.2)  # A has some zeros too
    window.session.state_changed()
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getOpenFileName", lambda *a, **k: (str(path), ""))
    window.findChild(QAction, "compareAction").trigger()
    view = window.compare_view
    qtbot.waitUntil(lambda: view.diff is not None and not window.controller.busy, timeout=20000)
    assert window.tabs.currentWidget() is view
    assert view.table.item(0, 0).text() == "fc1.weight" and view.table.item(0, 1).text() == "changed"
    assert view.table.rowCount() == 10
    found = window.session.comparison["fc1.weight"]
    assert found.changed_fraction == pytest.approx(0.3)  # 20 % zero in A, 50 % in B, nested
    assert found.zero_jaccard == pytest.approx(0.4)
    window.session.select([Selection("tensor", "fc1.weight")])
    zeros_a, zeros_b = (view.panels[i][1].image for i in (0, 1))
    assert float(np.mean(zeros_a)) == pytest.approx(0.2, abs=1e-6)
    assert float(np.mean(zeros_b)) == pytest.approx(0.5, abs=1e-6)
    index = window.tree.model.index_for(Selection("tensor", "fc1.weight"))
    from PySide6.QtCore import Qt

    assert window.tree.model.data(index, Qt.ItemDataRole.BackgroundRole) is not None
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: (str(tmp_path / "d.csv"), ""))
    view.csv_button.click()
    assert (tmp_path / "d.csv").read_text().startswith("name,status,shape_a")
    window.controller.open_demo("lenet")
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=20000)
    assert view.diff is None and window.session.comparison is None
