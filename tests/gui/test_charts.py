"""The sparsity chart and the histogram show what ``doc.report()`` and the masks say, and follow the session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from pytestqt.qtbot import QtBot

from sparsegui.core.document import Document
from sparsegui.core.render import pruning_threshold
from sparsegui.gui.charts import SparsityChart, WeightHistogram, abbreviate
from sparsegui.gui.session import Selection, Session


@pytest.fixture
def session() -> Session:
    return Session(Document.demo("lenet"))


@pytest.fixture
def chart(qtbot: QtBot, session: Session) -> SparsityChart:
    widget = SparsityChart(session)
    qtbot.addWidget(widget)
    widget.resize(700, 400)
    widget.show()  # a hidden chart keeps its numbers and draws when shown
    return widget


@pytest.fixture
def histogram(qtbot: QtBot, session: Session) -> WeightHistogram:
    widget = WeightHistogram(session)
    qtbot.addWidget(widget)
    widget.resize(700, 400)
    return widget


def report_sparsities(doc: Document) -> dict[str, float]:
    report = doc.report()
    return {f"{m.name}.{t.name}" if m.name else t.name: t.sparsity for m in report.modules for t in m.tensors}


def prune_a_few(session: Session) -> None:
    doc = session.document
    doc.prune("ln_structured", ["conv2.weight"], amount=0.5, n=2, dim=0)
    doc.prune("l1_unstructured", ["conv2.weight", "fc1.weight"], amount=0.3)
    doc.global_prune("l1_unstructured", ["fc2.weight", "fc3.weight"], amount=0.5)
    session.state_changed()


def test_bar_heights_are_the_report_sparsities(chart: SparsityChart, session: Session) -> None:
    assert chart.names[:2] == ["conv1.weight", "conv1.bias"] and not chart.heights.any()
    prune_a_few(session)
    expected = report_sparsities(session.document)
    assert chart.names == list(expected)
    np.testing.assert_allclose(chart.heights, list(expected.values()))
    np.testing.assert_allclose(chart.bars.opts["height"], list(expected.values()))
    report = session.document.report()
    summary = chart.summary_label.text()
    assert f"{report.sparsity:.2%}" in summary
    assert f"{report.parameters - report.zeros:,} of {report.parameters:,}" in summary


def test_undo_updates_the_chart(chart: SparsityChart, session: Session) -> None:
    session.document.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    session.state_changed()
    assert chart.heights[chart.names.index("fc1.weight")] == pytest.approx(0.5)
    session.document.undo()
    session.state_changed()
    assert not chart.heights.any()
    session.document.redo()
    session.state_changed()
    assert chart.heights[chart.names.index("fc1.weight")] == pytest.approx(0.5)


def test_selecting_a_bar_selects_the_tensor(chart: SparsityChart, session: Session, qtbot: QtBot) -> None:
    with qtbot.waitSignal(chart.tensor_clicked, timeout=1000) as blocker:
        chart.select_tensor("fc2.weight")
    assert blocker.args == ["fc2.weight"]
    assert session.selection == [Selection("tensor", "fc2.weight")]
    assert chart.bar_at(6.1) == "fc2.weight" and chart.bar_at(6.5) is None and chart.bar_at(99) is None


def test_clicking_a_bar_with_the_mouse(chart: SparsityChart, session: Session, qtbot: QtBot) -> None:
    chart.show()
    qtbot.waitExposed(chart)
    index = chart.names.index("fc1.weight")
    scene_pos = chart.plot.getViewBox().mapViewToScene(QPointF(index, 0.5))
    widget_pos = chart.graphics.mapFromScene(scene_pos)
    with qtbot.waitSignal(chart.tensor_clicked, timeout=1000) as blocker:
        qtbot.mouseClick(chart.graphics.viewport(), Qt.MouseButton.LeftButton, pos=widget_pos)
    assert blocker.args == ["fc1.weight"]
    assert session.selection == [Selection("tensor", "fc1.weight")]


def test_new_document_rebuilds_the_bars(chart: SparsityChart, session: Session) -> None:
    prune_a_few(session)
    session.replace_document(Document.demo("lenet"))
    assert len(chart.names) == 10 and not chart.heights.any()


def test_abbreviations() -> None:
    assert abbreviate("fc1.weight") == "fc1.w"
    assert abbreviate("encoder.layers.0.self_attn.out_proj.weight") == "e.l.0.sa.out_proj.w"
    assert len(abbreviate("a.very_long_module_name_that_goes_on.weight")) <= 20


def test_histogram_counts_and_threshold(histogram: WeightHistogram, session: Session) -> None:
    prune_a_few(session)
    session.select([Selection("tensor", "fc1.weight")])
    module = session.document.model.fc1
    assert histogram.counts.sum() == module.weight_orig.numel()
    assert histogram.pruned_counts.sum() == int((module.weight_mask == 0).sum()) == 14400
    threshold = pruning_threshold(module, "weight")
    assert threshold is not None and histogram.threshold == pytest.approx(threshold)
    assert histogram.threshold_line.isVisible() or not histogram.isVisible()
    assert histogram.threshold_line.value() == pytest.approx(threshold)
    # magnitude pruning: every pruned entry lies in a bin at or below the threshold's
    last_pruned_bin = np.nonzero(histogram.pruned_counts)[0].max()
    assert histogram.edges[last_pruned_bin] <= threshold
    assert "14,400 of 48,000 pruned" in histogram.info_label.text()


def test_histogram_follows_undo_and_log_scale(histogram: WeightHistogram, session: Session) -> None:
    session.select([Selection("tensor", "fc1.weight")])
    assert histogram.threshold is None and not histogram.pruned_counts.any()
    session.document.prune("l1_unstructured", ["fc1.weight"], amount=0.3)
    session.state_changed()
    assert histogram.threshold is not None and histogram.pruned_counts.sum() == 14400
    histogram.set_log_y(True)
    assert histogram.log_check.isChecked() and histogram.plot.ctrl.logYCheck.isChecked()
    session.document.undo()
    session.state_changed()
    assert histogram.threshold is None and not histogram.threshold_line.isVisible()
    assert histogram.counts.sum() == 48000
    session.replace_document(Document.demo("lenet"))
    assert histogram.qualname is None and histogram.counts.size == 0


def test_exports(chart: SparsityChart, histogram: WeightHistogram, session: Session, tmp_path: Path) -> None:
    prune_a_few(session)
    session.select([Selection("tensor", "conv2.weight")])
    for name, widget in (("chart", chart), ("histogram", histogram)):
        png, svg = widget.save_png(tmp_path / f"{name}.png"), widget.save_svg(tmp_path / f"{name}.svg")
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
        assert svg.stat().st_size > 1000 and b"<svg" in svg.read_bytes()
    assert chart.objectName() == "sparsityChart" and histogram.objectName() == "weightHistogram"


def test_a_hidden_chart_keeps_its_numbers_and_draws_when_shown(chart: SparsityChart, session: Session) -> None:
    chart.hide()
    prune_a_few(session)
    expected = list(report_sparsities(session.document).values())
    np.testing.assert_allclose(chart.heights, expected)  # the numbers follow at once
    assert not np.allclose(chart.bars.opts["height"], expected)  # the drawing waits
    chart.show()
    np.testing.assert_allclose(chart.bars.opts["height"], expected)
