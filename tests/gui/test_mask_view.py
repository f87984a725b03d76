"""The mask view shows exactly the render of the selected tensor and follows the session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QComboBox, QLabel
from pytestqt.qtbot import QtBot
from torch import nn

from sparsegui.core.document import Document
from sparsegui.core.loading import LoadedModel, SourceInfo
from sparsegui.core.render import make_layout
from sparsegui.gui.mask_view import EMPTY_TITLE, MaskView
from sparsegui.gui.session import Selection, Session


@pytest.fixture
def session() -> Session:
    return Session(Document.demo("lenet"))


@pytest.fixture
def view(qtbot: QtBot, session: Session) -> MaskView:
    widget = MaskView(session)
    qtbot.addWidget(widget)
    widget.resize(700, 500)
    return widget


def conv1_layout(values: np.ndarray) -> np.ndarray:
    return make_layout(values.shape).to_2d(values.astype(np.float32))


def test_image_is_the_mask_layout_after_pruning(view: MaskView, session: Session) -> None:
    """Pruning conv1 and notifying: zeros exactly where the mask is zero, NaN only between tiles."""
    session.select([Selection("tensor", "conv1.weight")])
    assert (np.nan_to_num(view.image.image, nan=1) == 1).all()
    session.document.prune("l1_unstructured", ["conv1.weight"], amount=0.4)
    session.state_changed()
    mask = session.document.model.conv1.weight_mask.numpy()
    expected = conv1_layout(mask)
    shown = view.image.image
    np.testing.assert_array_equal(np.isnan(shown), np.isnan(expected))
    np.testing.assert_array_equal(shown == 0, expected == 0)
    assert (shown == 0).sum() == (mask == 0).sum() == round(0.4 * mask.size)
    assert view.image.levels is not None and list(view.image.levels) == [0.0, 1.0]
    assert "conv1.weight" in view.title and "(6 × 1 × 3 × 3)" in view.title
    assert view.left_axis.tickStrings(view.left_axis.tickValues(0, 23, 400)[0][1], 1, 1) == [str(i) for i in range(6)]


def test_mode_switches_change_the_data(view: MaskView, session: Session) -> None:
    session.document.prune("l1_unstructured", ["conv1.weight"], amount=0.5)
    view.show_tensor("conv1.weight")
    module = session.document.model.conv1
    mask, orig = module.weight_mask.numpy(), module.weight_orig.detach().numpy()
    images = {}
    for mode in ("mask", "magnitude", "effective"):
        view.set_mode(mode)
        assert view.mode == mode and view.rendered is not None and view.rendered.mode == mode
        images[mode] = view.image.image.copy()
    np.testing.assert_array_equal(images["magnitude"], conv1_layout(np.abs(orig)))
    np.testing.assert_array_equal(images["effective"], conv1_layout(orig * mask))
    assert not np.array_equal(images["mask"], images["magnitude"], equal_nan=True)
    levels = view.image.levels
    assert levels is not None and levels[0] == -levels[1] < 0  # signed weights: symmetric levels
    with pytest.raises(ValueError):
        view.set_mode("sideways")


def test_follows_selection_kinds_and_document_replacement(view: MaskView, session: Session) -> None:
    session.document.prune("l1_unstructured", ["fc1.weight"], amount=0.3)
    session.select([Selection("parameter", "fc1.weight_orig")])
    assert view.qualname == "fc1.weight_orig" and view.image.image.shape == (120, 400)
    session.select([Selection("buffer", "fc1.weight_mask")])
    assert view.qualname == "fc1.weight_mask"
    session.select([Selection("module", "fc2")])  # not a tensor: the view keeps what it shows
    assert view.qualname == "fc1.weight_mask"
    session.replace_document(Document.demo("lenet"))
    assert view.qualname is None and view.rendered is None and view.title == EMPTY_TITLE
    assert view.show_tensor("nope.weight") is False and view.rendered is None


def test_undo_redraws(view: MaskView, session: Session) -> None:
    view.show_tensor("fc1.weight")
    session.document.prune("l1_unstructured", ["fc1.weight"], amount=0.6)
    session.state_changed()
    assert (view.image.image == 0).mean() == pytest.approx(0.6)
    session.document.undo()
    session.state_changed()
    assert (view.image.image == 1).all()


def test_cursor_readout(view: MaskView, session: Session) -> None:
    session.document.prune("l1_unstructured", ["conv1.weight"], amount=0.5)
    view.show_tensor("conv1.weight")
    mask = session.document.model.conv1.weight_mask
    # tile (out=2, in=0), kernel row 1, column 2 sits at picture row 2*4+1, column 2
    text = view.readout(2.5, 9.5)
    assert text.startswith("conv1.weight[2, 0, 1, 2]")
    assert text.endswith("kept" if mask[2, 0, 1, 2] else "pruned")
    assert view.cursor_label.text() == text
    view.set_mode("magnitude")
    value = abs(session.document.model.conv1.weight_orig[2, 0, 1, 2].item())
    assert f"{value:.6g}" in view.readout(2.5, 9.5)
    assert view.readout(3.5, 9.5) == ""  # the gap between tiles
    assert view.readout(-5, 9.5) == ""


def test_gpt2_sized_embedding_is_downsampled(qtbot: QtBot) -> None:
    model = nn.Module()
    model.wte = nn.Embedding(50257, 768)
    session = Session(Document(LoadedModel(model, SourceInfo(format="demo"))))
    view = MaskView(session)
    qtbot.addWidget(view)
    session.select([Selection("tensor", "wte.weight")])
    qtbot.waitUntil(lambda: not view.rendering, timeout=10000)  # 38.6M entries: rendered in the background
    rows, cols = view.image.image.shape
    assert rows <= 2048 and cols <= 2048 and (rows, cols) == (2011, 768)
    assert "downsampled ×25" in view.title
    view.set_mode("magnitude")
    qtbot.waitUntil(lambda: not view.rendering, timeout=10000)
    assert view.image.image.shape == (2011, 768) and "|Weight|" in view.title
    assert "rows 0–24" in view.readout(0.5, 3.0)


def test_object_names_and_exports(view: MaskView, session: Session, tmp_path: Path) -> None:
    assert view.objectName() == "maskView"
    assert view.findChild(QComboBox, "maskModeCombo") is view.mode_combo
    assert view.findChild(QComboBox, "maskColormapCombo") is view.colormap_combo
    assert view.findChild(QLabel, "maskCursorLabel") is view.cursor_label
    assert view.graphics.objectName() == "maskGraphics"
    session.document.prune("l1_unstructured", ["conv2.weight"], amount=0.3)
    view.show_tensor("conv2.weight")
    view.set_colormap("inferno")
    png, svg = view.save_png(tmp_path / "mask.png"), view.save_svg(tmp_path / "mask.svg")
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert svg.stat().st_size > 1000 and b"<svg" in svg.read_bytes()


def test_big_tensors_render_in_the_background_and_the_newest_wins(
    view: MaskView, session: Session, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above BACKGROUND_LIMIT entries the image is computed off the UI thread: the window gets a 'rendering' title at
    once, the image when ready; a selection made meanwhile is what ends up on screen."""
    import sparsegui.gui.mask_view as mask_view

    monkeypatch.setattr(mask_view, "BACKGROUND_LIMIT", 1000)  # fc1.weight (48,000) and fc2.weight (10,080) are big
    session.document.prune("l1_unstructured", ["fc1.weight", "fc2.weight"], amount=0.5)
    assert view.show_tensor("fc1.weight")
    assert view.rendering and "rendering" in view.title
    qtbot.waitUntil(lambda: not view.rendering, timeout=5000)
    assert view.title.startswith("fc1.weight (120 × 400)")
    shown = view.image.image
    assert shown.shape == (120, 400) and int((shown == 0).sum()) == 24000

    view.show_tensor("fc2.weight")
    view.show_tensor("conv1.weight")  # small: at once, and the pending fc2 render is dropped
    assert not view.rendering and view.title.startswith("conv1.weight")
    qtbot.wait(200)
    assert view.title.startswith("conv1.weight") and view.rendered is not None
    assert view.rendered.layout.kind == "conv-grid"
