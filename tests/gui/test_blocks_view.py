"""The Blocks tab on a GPT-2 folder: the grid shows each tensor's sparsity, clicks select, undo redraws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, Qt
from transformers import GPT2Config, GPT2LMHeadModel

from sparsegui.core.steps import PruneStep
from sparsegui.gui.session import Selection


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=4, n_embd=32, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0,
                        eos_token_id=0)
    folder = tmp_path_factory.mktemp("blocks") / "gpt2"
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def open_folder(window, qtbot, folder: Path) -> None:  # type: ignore[no-untyped-def]
    assert window.controller.open_path(folder)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=30000)
    assert window.shown_errors == []


def click_view(qtbot, view, plot, x: float, y: float) -> None:  # type: ignore[no-untyped-def]
    """A real left click at view coordinates (x, y) of ``plot``."""
    scene = plot.getViewBox().mapViewToScene(QPointF(x, y))
    point = view.graphics.mapFromScene(scene)
    qtbot.mouseClick(view.graphics.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(point.x(), point.y()))


def test_the_tab_shows_only_for_models_with_repeated_blocks(window, qtbot, gpt2_folder: Path) -> None:
    blocks = window.tabs.indexOf(window.blocks_view)
    assert not window.tabs.isTabVisible(blocks)  # the lenet demo has no blocks
    open_folder(window, qtbot, gpt2_folder)
    assert window.tabs.isTabVisible(blocks)
    grid = window.blocks_view.grid
    assert grid.stack == "transformer.h" and grid.blocks == (0, 1, 2, 3)
    assert "attn.c_attn.weight" in grid.roles
    assert "transformer.wte.weight" in grid.others and "lm_head.weight" not in grid.others  # tied: counted once


def test_cells_follow_pruning_clicks_select_and_undo_redraws(window, qtbot, gpt2_folder: Path) -> None:
    open_folder(window, qtbot, gpt2_folder)
    view = window.blocks_view
    window.tabs.setCurrentWidget(view)
    role = view.grid.roles.index("mlp.c_fc.weight")
    before = view.values[role].copy()
    window.controller.prune(PruneStep("l1_unstructured", ("transformer.h.2.mlp.c_fc.weight",), amount=0.75))
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=30000)
    qtbot.waitUntil(lambda: not np.isnan(view.values[role, 2]), timeout=30000)
    assert view.values[role, 2] == pytest.approx(0.75, abs=1e-3)
    assert np.array_equal(np.delete(view.values[role], 2), np.delete(before, 2), equal_nan=True)
    assert view.block_counts[2].zeros == window.session.totals.module("transformer.h.2").zeros

    click_view(qtbot, view, view.heat, 2, role)
    assert window.session.selection == [Selection("tensor", "transformer.h.2.mlp.c_fc.weight")]
    assert view.marks.data["x"].tolist() == [2] and view.marks.data["y"].tolist() == [role]

    click_view(qtbot, view, view.per_block, 1, 0.1)
    chosen = [s.name for s in window.session.selection]
    assert chosen == view.grid.block_tensors(1) and all(n.startswith("transformer.h.1.") for n in chosen)

    window.controller.undo()
    qtbot.waitUntil(lambda: view.values[role, 2] == pytest.approx(before[2]), timeout=30000)


def test_the_chart_saves_as_png_and_svg(window, qtbot, gpt2_folder: Path, tmp_path: Path) -> None:
    open_folder(window, qtbot, gpt2_folder)
    png = window.blocks_view.save_png(tmp_path / "blocks.png")
    svg = window.blocks_view.save_svg(tmp_path / "blocks.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in svg.read_bytes()[:2000]


def test_both_charts_switch_to_norm_removed(window, qtbot, gpt2_folder: Path) -> None:
    from sparsegui.core.energy import measure

    open_folder(window, qtbot, gpt2_folder)
    name = "transformer.h.1.attn.c_proj.weight"
    window.controller.prune(PruneStep("l1_unstructured", (name,), amount=0.5))
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=30000)
    qtbot.waitUntil(lambda: window.session.totals.norm_removed(name) is not None, timeout=30000)
    expected = measure(window.session.state.tensors[name]).norm_removed
    assert 0 < expected < 0.5

    chart, view = window.sparsity_chart, window.blocks_view
    chart.show_metric("norm_removed")
    view.show_metric("norm_removed")
    assert chart.heights[chart.names.index(name)] == pytest.approx(expected)
    assert chart.plot.titleLabel.text == "Norm removed per tensor"
    role = view.grid.roles.index("attn.c_proj.weight")
    assert view.values[role, 1] == pytest.approx(expected)
    assert view.values[role, 0] == 0.0
    assert 0 < view.block_values[1] < expected  # the block's other tensors dilute it
    chart.show_metric("sparsity")
    assert chart.heights[chart.names.index(name)] == pytest.approx(0.5)
