"""One thread touches the model at a time: while a job runs, nothing else changes the model, and views may draw.

A job is held inside a pruning method's ``compute_mask``; meanwhile every action of the window is triggered, every
row of the History panel clicked, a file dropped, the autosave restored, the device changed, the Prune panel's
buttons pressed, the tree drawn and tensors selected. None of it may change the model or raise; afterwards the
history, the History panel and the model agree, and an export reloads to exactly what the recorded recipe gives.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyqtgraph as pg
import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QAction, QDropEvent
from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox
from torch.nn.utils import prune

from sparsegui.core.document import Document
from sparsegui.core.loading import load_model
from sparsegui.core.recipe import apply_recipe
from sparsegui.core.steps import PruneStep
from sparsegui.gui.autosave import offer_restore
from sparsegui.gui.errors import ExceptionHandler
from sparsegui.gui.session import Selection
from tests.helpers import assert_same_state, assert_same_tensors, full_state


class Blocking(prune.BasePruningMethod):
    """Prunes every other entry, after waiting (while ``hold`` is set) until the test releases it."""

    PRUNING_TYPE = "unstructured"
    hold = threading.Event()
    entered = threading.Event()
    release = threading.Event()

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        if Blocking.hold.is_set() and t.numel() == 840:  # fc3.weight: the job has already pruned fc2.weight
            Blocking.entered.set()
            Blocking.release.wait(60)
        mask = default_mask.clone()
        mask.view(-1)[::2] = 0
        return mask


def wait_done(window, qtbot, count: int) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: not window.session.busy and len(window.session.document.history.labels) == count,
                    timeout=20000)


def test_nothing_changes_the_model_while_a_job_runs(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # things the actions would open or write if the gate let them through
    source = tmp_path / "other.pt"
    Document.demo("resnet").export(source)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"steps": [{"op": "remove", "targets": ["*"]}]}))
    outputs = iter(tmp_path / f"out{i}.pt" for i in range(1000))
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda _p, title, *a, **k: (str(recipe if "recipe" in title.lower() else source), ""))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(next(outputs)), ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    for name in ("question", "warning", "information"):
        monkeypatch.setattr(QMessageBox, name, lambda *a, **k: QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QMessageBox, "about", lambda *a, **k: None)
    monkeypatch.setattr(QMessageBox, "exec", lambda *a, **k: 0)
    monkeypatch.setattr(QDialog, "exec", lambda *a, **k: 0)
    window.controller.add_recent(str(source))

    controller, session = window.controller, window.session
    controller.prune(PruneStep("l1_unstructured", ("conv1.weight",), amount=0.3))
    wait_done(window, qtbot, 1)
    controller.prune(PruneStep("random_unstructured", ("fc2.weight",), amount=0.5, seed=3))
    wait_done(window, qtbot, 2)
    doc = session.document

    handler = ExceptionHandler(window)
    handler.install()
    shown: list[str] = []
    monkeypatch.setattr("sparsegui.gui.errors.show_error", lambda _p, title, exc, *a: shown.append(f"{title}: {exc}"))
    Blocking.hold.set()
    Blocking.entered.clear()
    Blocking.release.clear()
    try:
        assert controller.prune(PruneStep("tests.gui.test_gate:Blocking", ("fc2.weight", "fc3.weight")))
        assert Blocking.entered.wait(20)
        assert session.busy
        state = doc.state
        before = full_state(doc.model)

        for action in window.findChildren(QAction):
            if not isinstance(action.parent(), pg.GraphicsScene):  # pyqtgraph's own "Export..." needs a right-click
                action.trigger()
        for row in reversed(range(window.history_view.model.rowCount())):  # ends asking for the start
            window.history_view.click_row(row)
        data = QMimeData()
        data.setUrls([QUrl.fromLocalFile(str(source))])
        window.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                                    Qt.KeyboardModifier.NoModifier))
        offer_restore(window, controller, {"source": {"path": str(source)}, "recipe": json.loads(recipe.read_text())})
        offer_restore(window, controller, {"source": {"demo": "resnet"}, "recipe": json.loads(recipe.read_text())})
        window.device_combo.activated.emit(0)
        panel = window.prune_panel
        for button in (panel.apply_button, panel.remove_button, panel.remove_all_button):
            button.setEnabled(True)  # enabled or not, a press must change nothing
            button.click()
        window.tree.view.expandAll()
        window.tree.view.viewport().repaint()
        session.select([Selection("tensor", "fc1.weight"), Selection("tensor", "conv1.weight")])
        window.tabs.setCurrentIndex(1)
        window.grab()
        assert not window.close()  # quitting waits for the job too

        assert session.busy and doc.state is state and session.document is doc
        assert_same_state(before, full_state(doc.model))
        assert controller.refused  # the gate said no, and said why
    finally:
        Blocking.release.set()
        Blocking.hold.clear()
    wait_done(window, qtbot, 3)
    qtbot.waitUntil(lambda: not window.refresh_pending(), timeout=10000)
    handler.uninstall()

    assert handler.seen == [] and shown == []
    assert session.document is doc
    history = doc.history
    assert history.index == 3 and len(history.labels) == 3
    rows = [window.history_view.model.data(window.history_view.model.index(r, 0))
            for r in range(window.history_view.model.rowCount())]
    assert rows == ["<opened>", *history.labels]
    replayed = Document.demo("lenet")
    apply_recipe(replayed, doc.recipe())
    assert_same_state(full_state(replayed.model), full_state(doc.model))
    exported, expected = tmp_path / "final.pt", tmp_path / "replayed.pt"
    doc.export(exported)
    replayed.export(expected)
    assert_same_tensors(load_model(exported).model.state_dict(), load_model(expected).model.state_dict())
    assert not any(Path(tmp_path / f"out{i}.pt").exists() for i in range(1000))
