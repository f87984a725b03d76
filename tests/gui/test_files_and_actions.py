"""Files through the real dialog paths, drops, recent files, image exports, recipes and Cancel."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox

from sparsegui.core.demos import build_demo
from sparsegui.core.loading import load_model
from sparsegui.core.steps import PruneStep
from tests.helpers import assert_same_state, full_state


def wait_opened(window, qtbot, path: Path) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: window.session.document.source.path == str(path) or bool(window.shown_errors),
                    timeout=20000)
    assert not window.shown_errors


def lenet_state() -> dict[str, torch.Tensor]:
    return build_demo("lenet").state_dict()


def test_open_hdf5_and_sharded_safetensors(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A plain HDF5 file and a sharded safetensors index open through File ▸ Open."""
    from safetensors.torch import save_file

    state = lenet_state()
    h5_path = tmp_path / "plain.h5"
    with h5py.File(h5_path, "w") as h5:
        for key, tensor in state.items():
            h5.create_dataset(key.replace(".", "/"), data=tensor.numpy())
    keys = list(state)
    save_file({k: state[k] for k in keys[:4]}, str(tmp_path / "a.safetensors"))
    save_file({k: state[k] for k in keys[4:]}, str(tmp_path / "b.safetensors"))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {k: "a.safetensors" if i < 4 else "b.safetensors"
                                                for i, k in enumerate(keys)}}))
    for path in (h5_path, index):
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, p=path, **k: (str(p), ""))
        window.open_action.trigger()
        wait_opened(window, qtbot, path)
        assert window.session.document.report().parameters == 60074


def test_open_with_architecture_dialog(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """File ▸ Open with Architecture builds the real class and loads the checkpoint into it."""
    path = tmp_path / "sd.pt"
    torch.save(lenet_state(), path)

    def fill_and_accept(dialog: QDialog) -> int:
        dialog.path.setText(str(path))
        dialog.factory.setText("sparsegui.core.demos:lenet")
        dialog._accept()
        return dialog.result()

    monkeypatch.setattr("sparsegui.gui.dialogs.ArchitectureDialog.exec", fill_and_accept)
    window.arch_action.trigger()
    wait_opened(window, qtbot, path)
    assert type(window.session.document.model).__name__ == "LeNet"


def test_architecture_dialog_explains_bad_input(qtbot) -> None:  # type: ignore[no-untyped-def]
    """The dialog refuses bad keyword JSON in place instead of closing."""
    from sparsegui.gui.dialogs import ArchitectureDialog

    dialog = ArchitectureDialog()
    qtbot.addWidget(dialog)
    dialog.path.setText("x.pt")
    dialog.factory.setText("pkg:make")
    dialog.kwargs.setText("{not json")
    dialog._accept()
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert "JSON" in dialog.error.text()


def test_torchscript_needs_trust(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A TorchScript archive opens after the trust question is answered with Open."""
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(build_demo("lenet")), str(path))
    asked: list[str] = []

    def agree(_parent, _title, text, *_a, **_k):  # type: ignore[no-untyped-def]
        asked.append(text)
        return QMessageBox.StandardButton.Open

    monkeypatch.setattr("sparsegui.gui.controller.QMessageBox.warning", agree)
    window.controller.open_path(path)
    wait_opened(window, qtbot, path)
    assert "TorchScript" in asked[0]


def test_drop_a_file_opens_it_and_recent_files_remember(window, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Dropping a checkpoint on the window opens it; it is listed under Open Recent."""
    path = tmp_path / "dropped.pt"
    torch.save(lenet_state(), path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    wait_opened(window, qtbot, path)
    recent = [a.text() for a in window.recent_menu.actions()]
    assert str(path.resolve()) in recent
    assert window.controller.recent_files()[0] == str(path.resolve())


def test_export_masks_recipe_and_images(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Export Masks, Export Recipe and image exports (PNG and SVG) write files that read back."""
    doc = window.session.document
    window.controller.prune(PruneStep("l1_unstructured", ("fc1.weight",), amount=0.5))
    qtbot.waitUntil(lambda: not window.session.busy and len(window.session.document.history.labels) == 1)
    targets = {"masks": tmp_path / "masks.h5", "recipe": tmp_path / "recipe.json",
               "png": tmp_path / "chart.png", "svg": tmp_path / "mask.svg"}
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(targets["masks"]), ""))
    window.export_masks_action.trigger()
    qtbot.waitUntil(lambda: targets["masks"].exists() and not window.session.busy)
    with h5py.File(targets["masks"]) as h5:
        assert "fc1" in h5
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(targets["recipe"]), ""))
    window.export_recipe_action.trigger()
    recipe = json.loads(targets["recipe"].read_text())
    assert recipe["steps"][0]["targets"] == ["fc1.weight"]
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(targets["png"]), ""))
    window.export_image(window.sparsity_chart)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(targets["svg"]), ""))
    window.session.select([])
    window.mask_view.show_tensor("fc1.weight")
    window.export_image(window.mask_view)
    assert targets["png"].read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in targets["svg"].read_bytes()[:2000]
    assert doc.report().tensor("fc1.weight").zeros == 24000


def test_apply_recipe_from_the_menu_undoes_as_one_step(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """File ▸ Apply Recipe replays every step; one Undo takes the whole recipe back."""
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"steps": [
        {"op": "prune", "method": "l1_unstructured", "targets": ["*.weight"], "types": ["Conv2d"], "amount": 0.2},
        {"op": "prune", "method": "foobar", "targets": ["fc3.bias"]},
    ]}))
    before = full_state(window.session.document.model)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(recipe), ""))
    window.recipe_action.trigger()
    qtbot.waitUntil(lambda: not window.session.busy and len(window.session.document.history.labels) == 1)
    assert window.session.document.model.fc3.bias_mask.tolist() == [0.0, 1.0] * 5
    window.undo_action.trigger()
    assert_same_state(before, full_state(window.session.document.model))


def test_cancel_leaves_model_unchanged(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    """Cancel during a job: the model is as before, nothing is on the undo stack, the status says so."""
    before = full_state(window.session.document.model)
    runner = window.controller.runner
    runner.started.connect(lambda _label: runner.cancel())
    window.controller.prune(PruneStep("l1_unstructured", ("*.weight",), amount=0.5))
    qtbot.waitUntil(lambda: not window.session.busy, timeout=20000)
    assert len(window.session.document.history.labels) == 0
    assert_same_state(before, full_state(window.session.document.model))
    assert "Cancelled" in window.statusBar().currentMessage()


def test_busy_disables_conflicting_actions(window) -> None:  # type: ignore[no-untyped-def]
    """While a job runs, Open, Export and Apply are disabled; they come back after."""
    window.session.set_busy(True)
    assert not window.open_action.isEnabled() and not window.export_action.isEnabled()
    assert not window.prune_panel.apply_button.isEnabled()
    window.session.set_busy(False)
    assert window.open_action.isEnabled()


def test_device_selector_lists_cpu_and_cuda_error_is_a_dialog(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    """The device list offers the CPU; asking for CUDA on a machine without it gives a dialog, not a crash."""
    devices = [window.device_combo.itemData(i) for i in range(window.device_combo.count())]
    assert devices[0] == "cpu"
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    window.controller.move_to("cuda")
    qtbot.waitUntil(lambda: bool(window.shown_errors), timeout=10000)
    assert "CUDA" in window.shown_errors[0]
    assert str(window.session.document.device) == "cpu"


def test_export_with_masks_reopens_pruned(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Export state_dict with Masks writes *_orig/*_mask that reopen as a pruned model."""
    window.session.document.prune("ln_structured", ["conv2.weight"], amount=0.5, n=2, dim=0)
    out = tmp_path / "masked.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    window.export_masks_state_action.trigger()
    qtbot.waitUntil(lambda: out.exists() and not window.session.busy)
    keys = list(torch.load(out, weights_only=True))
    assert "conv2.weight_orig" in keys and "conv2.weight_mask" in keys
    reopened = load_model(out).model
    assert reopened.get_submodule("conv2").weight_mask.sum() == window.session.document.model.conv2.weight_mask.sum()


def test_export_statistics_writes_csv_and_netron(window, qtbot, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    import csv
    import json

    from PySide6.QtGui import QAction

    window.session.document.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    window.session.state_changed()
    action = window.findChild(QAction, "exportStatsAction")
    for name, chosen in (("stats.csv", "CSV (*.csv)"), ("netron", "Netron attachment (*.json)")):
        monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName",
                            lambda *a, n=name, c=chosen, **k: (str(tmp_path / n), c))
        action.trigger()
        qtbot.waitUntil(lambda: not window.controller.busy, timeout=20000)
    rows = {r["name"]: r for r in csv.DictReader((tmp_path / "stats.csv").open())}
    assert float(rows["fc1.weight"]["sparsity"]) == 0.5 and rows["fc1.weight"]["bytes_csr"] == str(24000 * 8 + 121 * 4)
    attachment = json.loads((tmp_path / "netron.json").read_text())
    assert attachment["signature"] == "netron:attachment"
    assert window.shown_errors == []


def test_export_python_script_runs_and_matches(window, qtbot, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from PySide6.QtGui import QAction

    doc = window.session.document
    doc.prune("random_unstructured", ["fc1.weight"], amount=0.4, seed=2)
    doc.prune("ln_structured", ["conv2.weight"], amount=0.5, n=1, dim=0)
    window.session.state_changed()
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "prune_session.py"), ""))
    window.findChild(QAction, "exportScriptAction").trigger()
    assert window.shown_errors == []
    done = subprocess.run([sys.executable, str(tmp_path / "prune_session.py"), str(tmp_path / "out.pt")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(out["fc1.weight"], doc.model.fc1.weight)
    assert torch.equal(out["conv2.weight"], doc.model.conv2.weight)
