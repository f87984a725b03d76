"""The PyTorch pruning tutorial driven through the main window, as a user would: select, set, Apply, look, undo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from sparsegui.core.demos import LeNet, build_demo
from sparsegui.core.loading import load_model
from sparsegui.gui.session import Selection
from tests.helpers import assert_same_state, full_state


def select(window, *names: str) -> None:  # type: ignore[no-untyped-def]
    window.session.select([Selection("tensor", n) for n in names])


def apply(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    """Click Apply and wait for the job to finish and the undo stack to grow."""
    panel = window.prune_panel
    assert panel.apply_button.isEnabled(), panel.problem.text()
    index = window.session.document.history.index
    qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.session.busy and (window.session.document.history.index > index
                                                          or bool(window.shown_errors)), timeout=20000)
    assert not window.shown_errors


def set_method(window, name: str) -> None:  # type: ignore[no-untyped-def]
    combo = window.prune_panel.method
    index = combo.findData(name)
    assert index >= 0, name
    combo.setCurrentIndex(index)


def tree_children(window, module: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The labels of a module's rows in the tree (fetching them as a click on the arrow would)."""
    model = window.tree.model
    parent = model.module_index(module)
    while model.canFetchMore(parent):
        model.fetchMore(parent)
    labels = []
    for row in range(model.rowCount(parent)):
        child = model.index(row, 0, parent)
        labels.append(str(model.data(child)))
        while model.canFetchMore(child):
            model.fetchMore(child)
        labels += [str(model.data(model.index(r, 0, child))) for r in range(model.rowCount(child))]
    return labels


def test_tutorial_through_the_window(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    """random 30 % conv1.weight → L1 3 bias entries → ln_structured half the channels → remove, with undo/redo."""
    doc = window.session.document
    panel = window.prune_panel
    original = full_state(doc.model)

    select(window, "conv1.weight")
    set_method(window, "random_unstructured")
    panel.random_seed.setChecked(False)
    panel.seed.setValue(7)
    panel.amount.setValue(30.0)
    apply(window, qtbot)
    model = window.session.document.model
    assert [n for n, _ in model.conv1.named_parameters()] == ["bias", "weight_orig"]
    assert [n for n, _ in model.conv1.named_buffers()] == ["weight_mask"]
    labels = " ".join(tree_children(window, "conv1"))
    assert "weight_orig" in labels and "weight_mask" in labels and "RandomUnstructured" in labels
    assert "RandomUnstructured" in window.details.text()
    assert int((model.conv1.weight == 0).sum()) == 16
    heights = dict(zip(window.sparsity_chart.names, window.sparsity_chart.heights, strict=True))
    assert heights["conv1.weight"] == pytest.approx(16 / 54)
    after_random = full_state(model)

    select(window, "conv1.bias")
    set_method(window, "l1_unstructured")
    panel.amount_unit.setCurrentText("entries")
    panel.amount.setValue(3)
    apply(window, qtbot)
    assert int((model.conv1.bias == 0).sum()) == 3

    select(window, "conv1.weight")
    set_method(window, "ln_structured")
    panel.amount_unit.setCurrentText("%")
    panel.amount.setValue(50.0)
    panel.n.setCurrentText("2")
    panel.dim.setValue(0)
    apply(window, qtbot)
    hook = model.conv1._forward_pre_hooks
    assert any(type(h).__name__ == "PruningContainer" for h in hook.values())
    channels = model.conv1.weight.reshape(6, -1).abs().sum(dim=1)
    assert int((channels == 0).sum()) == 3
    assert "LnStructured" in window.details.text()

    window.undo_action.trigger()
    window.undo_action.trigger()
    assert_same_state(after_random, full_state(model))
    window.redo_action.trigger()
    window.redo_action.trigger()
    assert int((model.conv1.weight.reshape(6, -1).abs().sum(dim=1) == 0).sum()) == 3

    select(window, "conv1.weight")
    qtbot.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.session.busy and "weight_orig" not in dict(model.conv1.named_parameters()))
    assert "weight" in dict(model.conv1.named_parameters())

    while window.session.document.history.can_undo:
        window.undo_action.trigger()
    assert_same_state(original, full_state(model))
    assert not window.isWindowModified()


def test_per_type_batch_and_global_and_plugin(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    """20 % of every Conv2d and 40 % of every Linear by pattern and type; global 20 %; FooBar on fc3.bias."""
    panel = window.prune_panel
    model = window.session.document.model
    set_method(window, "l1_unstructured")
    panel.scope_pattern.setChecked(True)
    panel.pattern.setText("*.weight")
    panel.types.setText("Conv2d")
    panel.amount.setValue(20.0)
    apply(window, qtbot)
    panel.types.setText("Linear")
    panel.amount.setValue(40.0)
    apply(window, qtbot)
    assert int((model.conv2.weight == 0).sum()) == round(0.2 * 864)
    assert int((model.fc1.weight == 0).sum()) == round(0.4 * 48000)

    while window.session.document.history.can_undo:
        window.undo_action.trigger()
    weights = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]
    select(window, *weights)
    panel.scope_global.setChecked(True)
    panel.amount.setValue(20.0)
    apply(window, qtbot)
    zeros = [int((getattr(model, n.split(".")[0]).weight == 0).sum()) for n in weights]
    total = sum(getattr(model, n.split(".")[0]).weight.numel() for n in weights)
    assert sum(zeros) == round(0.2 * total)
    sparsities = [z / getattr(model, n.split(".")[0]).weight.numel() for z, n in zip(zeros, weights, strict=True)]
    assert len({round(s, 3) for s in sparsities}) > 1

    panel.scope_selected.setChecked(True)
    select(window, "fc3.bias")
    set_method(window, "foobar")
    apply(window, qtbot)
    assert model.fc3.bias_mask.tolist() == [0.0, 1.0] * 5


def test_invalid_settings_disable_apply(window) -> None:  # type: ignore[no-untyped-def]
    """An impossible amount is explained in place and Apply stays disabled; nothing is selected → disabled."""
    panel = window.prune_panel
    assert not panel.apply_button.isEnabled()
    select(window, "conv1.bias")
    set_method(window, "l1_unstructured")
    panel.amount_unit.setCurrentText("entries")
    panel.amount.setValue(7)
    assert not panel.apply_button.isEnabled()
    assert "amount=7" in panel.problem.text()
    set_method(window, "ln_structured")
    assert not panel.apply_button.isEnabled()


def make_files(tmp_path: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    sd = build_demo("lenet").state_dict()
    files = {"pt": tmp_path / "m.pt", "safetensors": tmp_path / "m.safetensors",
             "ckpt": tmp_path / "train.pt", "legacy": tmp_path / "legacy.pth"}
    torch.save(sd, files["pt"])
    save_file(dict(sd), str(files["safetensors"]))
    torch.save({"epoch": 1, "model_state_dict": sd, "optimizer": {"state": {}}}, files["ckpt"])
    torch.save(sd, files["legacy"], _use_new_zipfile_serialization=False)
    return files


@pytest.mark.parametrize("kind", ["pt", "safetensors", "ckpt", "legacy"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".h5"])
def test_open_prune_export_reload(window, qtbot, tmp_path, monkeypatch, kind, suffix) -> None:  # type: ignore[no-untyped-def]
    """File ▸ Open (dialog patched) each format, prune, File ▸ Export, and the export loads back with the zeros."""
    path = make_files(tmp_path)[kind]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    window.open_action.trigger()
    qtbot.waitUntil(lambda: window.session.document.source.path == str(path), timeout=20000)
    assert window.windowTitle().startswith(path.name)
    window.session.document.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    out = tmp_path / f"out{suffix}"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    window.export_action.trigger()
    qtbot.waitUntil(lambda: out.exists() and not window.session.busy, timeout=20000)
    reloaded = load_model(out).model
    assert int((reloaded.get_submodule("fc1").weight == 0).sum()) == 24000
    if suffix == ".pt":
        LeNet().load_state_dict(torch.load(out, weights_only=True), strict=True)


def test_trusted_file_asks_first(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A pickled module opens only after the trust dialog, which names what it would import."""
    path = tmp_path / "full.pt"
    torch.save(build_demo("lenet"), path)
    asked: list[str] = []

    def refuse(_parent, _title, text, *_a, **_k):  # type: ignore[no-untyped-def]
        asked.append(text)
        return QMessageBox.StandardButton.Cancel

    monkeypatch.setattr("sparsegui.gui.controller.QMessageBox.warning", refuse)
    window.controller.open_path(path)
    qtbot.waitUntil(lambda: bool(asked) and not window.session.busy, timeout=20000)
    assert "sparsegui.core.demos.LeNet" in asked[0]
    assert window.session.document.source.demo == "lenet"

    monkeypatch.setattr("sparsegui.gui.controller.QMessageBox.warning",
                        lambda *a, **k: QMessageBox.StandardButton.Open)
    window.controller.open_path(path)
    qtbot.waitUntil(lambda: window.session.document.source.path == str(path), timeout=20000)
    assert window.session.document.source.trusted


def test_bad_file_shows_error_and_keeps_model(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A corrupt file gives an error dialog; the model in hand is unchanged and the app keeps running."""
    window.session.document.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    before = full_state(window.session.document.model)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    errors = window.shown_errors
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    window.open_path(str(bad))
    qtbot.waitUntil(lambda: bool(errors), timeout=20000)
    assert "PNG" in errors[0]
    assert_same_state(before, full_state(window.session.document.model))


def test_close_with_unsaved_changes_asks(window, qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Closing with unexported changes asks first; Cancel keeps the window open."""
    window.session.document.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    asked: list[bool] = []

    def cancel(*_a, **_k):  # type: ignore[no-untyped-def]
        asked.append(True)
        return QMessageBox.StandardButton.Cancel

    monkeypatch.setattr(QMessageBox, "question", cancel)
    assert not window.close()
    assert asked and window.isVisible()


def test_exception_in_slot_is_shown(qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An exception raised in a Qt slot reaches the installed handler and becomes a dialog."""
    from PySide6.QtCore import QTimer

    from sparsegui.gui.errors import ExceptionHandler

    shown: list[str] = []
    monkeypatch.setattr("sparsegui.gui.errors.show_error", lambda _p, _t, exc, *_a: shown.append(str(exc)))
    handler = ExceptionHandler()
    handler.install()
    try:
        def boom() -> None:
            raise ValueError("slot exploded")

        QTimer.singleShot(0, boom)
        qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    finally:
        handler.uninstall()
    assert shown == ["slot exploded"]


def test_settings_and_object_names(window) -> None:  # type: ignore[no-untyped-def]
    """Every dock and toolbar has an objectName, so saveState() keeps the layout."""
    from PySide6.QtWidgets import QDockWidget, QToolBar

    for widget in window.findChildren(QDockWidget) + window.findChildren(QToolBar):
        assert widget.objectName(), widget
    assert window.findChild(QDockWidget, "modulesDock") is not None


def test_the_dim_field_says_what_it_prunes(window) -> None:  # type: ignore[no-untyped-def]
    """ln_structured's dim is explained from the tensor's axes: dim 0 of a Linear weight is its output features."""
    panel = window.prune_panel
    set_method(window, "ln_structured")
    select(window, "fc1.weight")
    panel.dim.setValue(0)
    assert panel.dim_meaning.text() == "dim 0 of fc1.weight = output features"
    panel.dim.setValue(1)
    assert panel.dim_meaning.text() == "dim 1 of fc1.weight = input features"
    select(window, "conv1.weight", "fc2.weight")
    assert panel.dim_meaning.text() == "dim 1 of conv1.weight, fc2.weight = input features"
    set_method(window, "l1_unstructured")
    assert not panel.dim_meaning.isVisible()
