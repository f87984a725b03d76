"""The Blocks tab: a transformer's repeated blocks as a grid of tensor role × block, a line per role along depth
and a bar per block.

The grid comes from :func:`sparsegui.core.blocks.find_blocks` (no Qt); the values from ``session.totals``, so a
tensor not counted yet is a blank cell until the background count reaches it. Clicking a cell selects its tensor,
clicking a block's bar selects every tensor of that block. The three plots share the block axis.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Signal
from PySide6.QtGui import QFontMetrics, QShowEvent
from PySide6.QtWidgets import QLabel, QWidget

from sparsegui.core import energy
from sparsegui.core.blocks import BlockGrid, find_blocks
from sparsegui.core.energy import combined
from sparsegui.core.stats import Count
from sparsegui.core.targets import model_order
from sparsegui.gui.charts import (
    METRICS,
    PRUNED_BRUSH,
    SELECTED_BRUSH,
    abbreviate,
    chart_layout,
    grid_cell,
    metric_combo,
    metric_value,
)
from sparsegui.gui.plot_files import export_png, export_svg
from sparsegui.gui.session import Selection, Session


class LabelAxis(pg.AxisItem):
    """A left axis naming rows at integer positions (abbreviated, thinned to fit the height)."""

    def __init__(self) -> None:
        super().__init__("left")
        self.roles: list[str] = []

    def set_roles(self, roles: list[str]) -> int:
        """Show ``roles``; returns the axis width that fits their labels."""
        self.roles = roles
        metrics = QFontMetrics(self.style["tickFont"] or self.font())
        width = max((metrics.horizontalAdvance(abbreviate(r, 24)) for r in roles), default=20) + 14
        self.setWidth(width)
        self.picture = None
        self.update()
        return width

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:
        minVal, maxVal = sorted((minVal, maxVal))  # the grid's y axis is inverted (first role on top)
        low, high = max(0, math.ceil(minVal)), min(len(self.roles) - 1, math.floor(maxVal))
        if high < low or size <= 0:
            return []
        line = QFontMetrics(self.style["tickFont"] or self.font()).height() + 2
        step = max(1, math.ceil((high - low + 1) * line / size))
        return [(float(step), [float(v) for v in range(low, high + 1, step)])]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [abbreviate(self.roles[round(v)], 24) if 0 <= round(v) < len(self.roles) else "" for v in values]


class _BlockAxis(pg.AxisItem):
    """A bottom axis naming block positions by their index in the checkpoint."""

    def __init__(self) -> None:
        super().__init__("bottom")
        self.blocks: tuple[int, ...] = ()

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:
        low, high = max(0, math.ceil(minVal)), min(len(self.blocks) - 1, math.floor(maxVal))
        if high < low or size <= 0:
            return []
        step = max(1, math.ceil((high - low + 1) * 28 / size))
        return [(float(step), [float(v) for v in range(low - low % step, high + 1, step) if v >= low])]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [str(self.blocks[round(v)]) if 0 <= round(v) < len(self.blocks) else "" for v in values]


class _PercentAxis(pg.AxisItem):
    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [f"{v * 100:.0f}%" for v in values]


def _percent(count: Count) -> str:
    return "not counted yet" if count.sparsity is None else f"{count.sparsity:.2%} zeros"


def _norm(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f", norm removed {value:.2%}"


class BlocksView(QWidget):
    """Sparsity of a transformer's repeated blocks; ``available`` says whether the open model has any."""

    available = Signal(bool)
    tensor_clicked = Signal(str)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("blocksView")
        self.session = session
        self.grid: BlockGrid | None = None
        self.values = np.zeros((0, 0))
        self.counts: dict[str, Count] = {}
        self.block_counts: list[Count] = []
        self.block_values: list[float | None] = []
        self.norms: dict[str, float | None] = {}
        self.curves: list[pg.PlotDataItem] = []
        self._stale = ""  # what a hidden view must do when shown: "rebuild", "refresh" or nothing

        self.summary_label = QLabel(" ", objectName="blocksSummaryLabel", wordWrap=True)
        self.metric_combo = metric_combo("blocksMetric")
        self.metric_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.info_label = QLabel(" ", objectName="blocksInfoLabel")
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setObjectName("blocksGraphics")
        self.role_axis = LabelAxis()
        self.block_axes = [_BlockAxis() for _ in range(3)]
        self.heat: pg.PlotItem = self.graphics.addPlot(
            row=0, col=0, axisItems={"left": self.role_axis, "bottom": self.block_axes[0]})
        self.heat.setTitle("Sparsity per tensor role and block", size="10pt")
        self.heat.invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.heat.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get("viridis"), interactive=False,
                                        width=14)
        self.colorbar.setImageItem(self.image)
        self.graphics.addItem(self.colorbar, row=0, col=1)  # beside, not inside: the three plots keep one width
        self.marks = pg.ScatterPlotItem(pxMode=False, symbol="s", size=0.92, brush=None,
                                        pen=pg.mkPen(SELECTED_BRUSH, width=2))
        self.heat.addItem(self.marks)

        self.lines: pg.PlotItem = self.graphics.addPlot(
            row=1, col=0, axisItems={"bottom": self.block_axes[1], "left": _PercentAxis("left")})
        self.lines.setTitle("Sparsity along depth, a line per role", size="10pt")
        self.lines.showGrid(y=True, alpha=0.25)
        self.legend = pg.LegendItem(labelTextSize="7pt", verSpacing=-6)
        self.graphics.addItem(self.legend, row=1, col=1)
        self.per_block: pg.PlotItem = self.graphics.addPlot(
            row=2, col=0, axisItems={"bottom": self.block_axes[2], "left": _PercentAxis("left")})
        self.per_block.setTitle("Sparsity per block (click a bar to select the block)", size="10pt")
        self.per_block.showGrid(y=True, alpha=0.25)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8)
        self.per_block.addItem(self.bars)
        for plot in (self.lines, self.per_block):
            plot.setXLink(self.heat)
            plot.setMenuEnabled(False)
            plot.setMouseEnabled(x=True, y=False)
            plot.getViewBox().setYRange(-0.03, 1.03, padding=0)
        self.heat.setMenuEnabled(False)
        self.heat.setMouseEnabled(x=True, y=False)
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)
        self.graphics.ci.layout.setRowStretchFactor(2, 1)

        chart_layout(self, self.metric_combo, self.summary_label, self.graphics, self.info_label)

        self.graphics.scene().sigMouseClicked.connect(self._on_click)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        session.model_changed.connect(self.refresh)
        session.counts_changed.connect(self.refresh)
        session.document_replaced.connect(lambda _doc: self.rebuild())
        session.selection_changed.connect(lambda _items: self._mark_selection())
        self.rebuild()

    # -- public API ----------------------------------------------------------------------------------------------
    def rebuild(self) -> None:
        """Find the blocks of the open model (a new document) and draw them (a hidden view keeps its numbers
        current and draws when shown: building hundreds of plot items is what costs)."""
        document = self.session.document
        self.grid = find_blocks(model_order(document.structure, document.state))
        self.available.emit(self.grid is not None)
        self._stale = "rebuild"
        self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self._draw()

    def refresh(self) -> None:
        """Read the counts of the current state; redraw the grid, the lines and the bars if shown."""
        grid = self.grid
        if grid is None:
            if self.isVisible():
                self._draw()
            return
        totals, metric = self.session.totals, self.metric
        names = [*grid.cells.values(), *grid.others]
        self.counts = {name: totals.tensor(name) for name in names}
        self.norms = {name: totals.norm_removed(name) for name in names}
        self.values = grid.matrix({name: metric_value(totals, name, metric) for name in names})
        self.block_counts = grid.block_counts(self.counts)
        if metric == "norm_removed":
            state = self.session.state
            self.block_values = [combined(energy.known(state.tensors[n]) for n in grid.block_tensors(b))
                                 for b in range(len(grid.blocks))]
        else:
            self.block_values = [c.sparsity for c in self.block_counts]
        self._stale = self._stale or "refresh"
        if self.isVisible():
            self._draw()

    def _draw(self) -> None:
        stale, self._stale = self._stale, ""
        grid = self.grid
        if stale == "rebuild":
            self._build_plots()
        if grid is None:
            return
        title, label = METRICS[self.metric]
        self.heat.setTitle(f"{title} per tensor role and block", size="10pt")
        self.lines.setTitle(f"{title} along depth, a line per role", size="10pt")
        self.per_block.setTitle(f"{title} per block (click a bar to select the block)", size="10pt")
        self.colorbar.setLabel("right", label.split(" ‖")[0])
        self.image.setImage(self.values, autoLevels=False, levels=(0.0, 1.0))
        self.image.setRect(QRectF(-0.5, -0.5, len(grid.blocks), len(grid.roles)))  # after the image: it scales it
        for i, curve in enumerate(self.curves):
            curve.setData(np.arange(len(grid.blocks)), self.values[i], connect="finite")
        heights = np.array([v if v is not None and not math.isnan(v) else 0.0 for v in self.block_values])
        self.bars.setOpts(x=np.arange(len(heights)), height=heights, width=0.8, brush=PRUNED_BRUSH, pen=None)
        self._summarize()
        self._mark_selection()

    def _build_plots(self) -> None:
        grid = self.grid
        self.lines.clear()
        self.legend.clear()
        self.curves = []
        if grid is None:
            self.summary_label.setText("No repeated blocks in this model.")
            return
        width = self.role_axis.set_roles(list(grid.roles))
        for plot in (self.lines, self.per_block):  # the same left edge as the grid, so the blocks line up
            plot.getAxis("left").setWidth(width)
        for axis in self.block_axes:
            axis.blocks = grid.blocks
            axis.picture = None
        self.legend.setColumnCount(max(1, math.ceil(len(grid.roles) / 12)))
        for i, role in enumerate(grid.roles):
            pen = pg.mkPen(pg.intColor(i, hues=max(len(grid.roles), 9)), width=1.5)
            curve = self.lines.plot([], [], pen=pen, symbol="o", symbolSize=4, symbolPen=None,
                                    symbolBrush=pen.color())
            self.legend.addItem(curve, abbreviate(role, 24))
            self.curves.append(curve)
        count = len(grid.blocks)
        for plot in (self.heat, self.lines, self.per_block):
            plot.getViewBox().setLimits(xMin=-1, xMax=count)
        self.heat.getViewBox().setLimits(yMin=-0.5, yMax=len(grid.roles) - 0.5)
        self.heat.setXRange(-0.5, count - 0.5, padding=0)
        self.heat.setYRange(-0.5, len(grid.roles) - 0.5, padding=0)

    def select_cell(self, role: int, block: int) -> str | None:
        """What a click on a cell does: select its tensor (None when the block lacks that role)."""
        name = self.grid.tensor_at(role, block) if self.grid is not None else None
        if name is not None:
            self.tensor_clicked.emit(name)
            self.session.select([Selection("tensor", name)])
        return name

    def select_block(self, block: int) -> list[str]:
        """What a click on a block's bar does: select every tensor of that block."""
        names = self.grid.block_tensors(block) if self.grid is not None else []
        if names:
            self.session.select([Selection("tensor", n) for n in names])
        return names

    @property
    def metric(self) -> str:
        """What the grid shows: ``"sparsity"`` or ``"norm_removed"``."""
        return str(self.metric_combo.currentData())

    def show_metric(self, metric: str) -> None:
        self.metric_combo.setCurrentIndex(self.metric_combo.findData(metric))

    def save_png(self, path: str | Path) -> Path:
        return export_png(self.graphics, path)

    def save_svg(self, path: str | Path) -> Path:
        return export_svg(self.graphics, path, "Sparsity per block")

    # -- internals -----------------------------------------------------------------------------------------------
    def _summarize(self) -> None:
        grid = self.grid
        assert grid is not None
        stack = Count(0, 0)
        for count in self.block_counts:
            stack += count
        others = ", ".join(abbreviate(n, 30) for n in grid.others[:4]) + (" …" if len(grid.others) > 4 else "")
        text = (f"{grid.stack}: {len(grid.blocks)} blocks × {len(grid.roles)} tensor roles, "
                f"{stack.numel:,} parameters, {_percent(stack)}")
        if grid.others:
            text += f" · outside the blocks: {len(grid.others)} tensors ({others})"
        self.summary_label.setText(text)

    def _mark_selection(self) -> None:
        grid = self.grid
        if grid is None:
            return
        canonical = self.session.document.structure.canonical
        chosen = {canonical.get(s.name, s.name) for s in self.session.selection if s.kind == "tensor"}
        spots = [cell for cell, name in grid.cells.items() if name in chosen]
        self.marks.setData(x=[b for _, b in spots], y=[r for r, _ in spots])

    def _cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """(role, block) under ``scene_pos``."""
        if self.grid is None:
            return None
        return grid_cell(self.heat, scene_pos, len(self.grid.roles), len(self.grid.blocks))

    def _bar_at(self, scene_pos: QPointF) -> int | None:
        box = self.per_block.getViewBox()
        if self.grid is None or not box.sceneBoundingRect().contains(scene_pos):
            return None
        x = box.mapSceneToView(scene_pos).x()
        block = round(x)
        return block if 0 <= block < len(self.grid.blocks) and abs(x - block) <= 0.45 else None

    def _on_click(self, event: object) -> None:
        if event.button() != pg.QtCore.Qt.MouseButton.LeftButton:  # type: ignore[attr-defined]
            return
        pos = event.scenePos()  # type: ignore[attr-defined]
        cell = self._cell_at(pos)
        if cell is not None:
            self.select_cell(*cell)
            return
        block = self._bar_at(pos)
        if block is not None:
            self.select_block(block)

    def _on_mouse_moved(self, pos: QPointF) -> None:
        grid = self.grid
        cell = self._cell_at(pos)
        if grid is not None and cell is not None:
            name = grid.tensor_at(*cell)
            self.info_label.setText(f"{name}: {_percent(self.counts[name])}{_norm(self.norms[name])}" if name else
                                    f"block {grid.blocks[cell[1]]} has no {grid.roles[cell[0]]}")
            return
        block = self._bar_at(pos)
        if grid is not None and block is not None:
            count = self.block_counts[block]
            norm = combined(energy.known(self.session.state.tensors[n]) for n in grid.block_tensors(block))
            self.info_label.setText(f"block {grid.blocks[block]}: {_percent(count)}{_norm(norm)}, "
                                    f"{count.numel:,} parameters, {len(grid.block_tensors(block))} tensors")
            return
        self.info_label.setText(" ")
