"""The Sensitivity tab: scan what pruning each tensor costs, level by level, then plan a global target.

The scan and the plan are :mod:`sparsegui.core.sensitivity` and :mod:`sparsegui.core.plan`; the scan runs as a job
through the controller (it changes nothing). The tensors × levels heatmap and a curve per tensor show the result;
clicking a cell previews that prune in the Mask tab (planned, not applied). The plan chart shows the proposed
sparsity per tensor against uniform pruning, and Apply Plan applies it as one undoable step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from sparsegui.core.errors import SparseGUIError
from sparsegui.core.export.atomic import write_text_atomic
from sparsegui.core.inputs import Inputs, load_inputs
from sparsegui.core.methods import available_methods
from sparsegui.core.plan import Plan, make_plan
from sparsegui.core.recipe import save_recipe_data
from sparsegui.core.sensitivity import Sensitivity, parse_levels, scan
from sparsegui.core.steps import PruneStep
from sparsegui.gui.blocks_view import LabelAxis
from sparsegui.gui.charts import PRUNED_BRUSH, SELECTED_BRUSH, UNPRUNED_BRUSH, grid_cell
from sparsegui.gui.errors import show_error
from sparsegui.gui.plot_files import export_png, export_svg
from sparsegui.gui.session import Selection, Session

LEVELS = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"


class _LevelAxis(pg.AxisItem):
    def __init__(self) -> None:
        super().__init__("bottom")
        self.levels: list[float] = []

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:
        return [(1.0, [float(i) for i in range(len(self.levels)) if minVal - 0.5 <= i <= maxVal + 0.5])]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [f"{self.levels[round(v)]:g}" if 0 <= round(v) < len(self.levels) else "" for v in values]


class SensitivityView(QWidget):
    """Controls, heatmap, curves and plan chart of a sensitivity scan of the open model."""

    scan_requested = Signal(object)  # a callable (doc, progress, cancel) -> Sensitivity
    plan_apply_requested = Signal(dict, str)  # recipe, label
    preview = Signal(str, object, str)  # tensor, planned TensorState, what it is

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sensitivityView")
        self.session = session
        self.result: Sensitivity | None = None
        self.plan: Plan | None = None
        self.inputs: Inputs | None = None
        self.inputs_path: str | None = None
        self.lines: list[tuple[pg.PlotDataItem, Any]] = []

        self.method = QComboBox(objectName="sensitivityMethod")
        for name, spec in available_methods().items():
            if spec.takes_amount and not spec.takes_dim:
                self.method.addItem(name.rsplit(":", 1)[-1], name)
        self.method.setCurrentIndex(max(0, self.method.findData("l1_unstructured")))
        self.levels = QLineEdit(LEVELS, objectName="sensitivityLevels")
        self.targets = QLineEdit("*.weight", objectName="sensitivityTargets")
        self.targets.setToolTip("Tensor names or glob patterns, separated by commas")
        self.inputs_button = QPushButton("Sample inputs…", objectName="sensitivityInputs")
        self.inputs_button.setToolTip("A .pt or .safetensors file with a tensor, a tuple or a dict of keyword tensors: "
                                      "the signal becomes the output drift ‖f_pruned(x) − f(x)‖ / ‖f(x)‖")
        self.run_button = QPushButton("Scan", objectName="sensitivityRun")
        self.target = QDoubleSpinBox(objectName="planTarget", minimum=0.0, maximum=100.0, value=50.0, suffix=" %")
        self.plan_button = QPushButton("Plan", objectName="planButton")
        self.apply_button = QPushButton("Apply plan", objectName="planApply")
        self.save_button = QPushButton("Save plan…", objectName="planSave")
        self.csv_button = QPushButton("Export CSV…", objectName="sensitivityCsv")
        self.summary = QLabel("Scan to see what pruning each tensor costs; the model does not change.",
                              objectName="sensitivitySummary", wordWrap=True)
        self.info = QLabel(" ", objectName="sensitivityInfo")

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setObjectName("sensitivityGraphics")
        self.name_axis = LabelAxis()
        self.level_axes = [_LevelAxis(), _LevelAxis()]
        self.heat: pg.PlotItem = self.graphics.addPlot(row=0, col=0, axisItems={"left": self.name_axis,
                                                                               "bottom": self.level_axes[0]})
        self.heat.invertY(True)
        self.heat.setMenuEnabled(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.heat.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get("inferno"), interactive=False,
                                        width=14)
        self.colorbar.setImageItem(self.image)
        self.graphics.addItem(self.colorbar, row=0, col=1)
        self.marks = pg.ScatterPlotItem(pxMode=False, symbol="s", size=0.92, brush=None,
                                        pen=pg.mkPen(SELECTED_BRUSH, width=2))
        self.heat.addItem(self.marks)
        self.colorbar.axis.enableAutoSIPrefix(False)
        self.curves: pg.PlotItem = self.graphics.addPlot(row=1, col=0, axisItems={"bottom": self.level_axes[1]})
        self.curves.showGrid(x=True, y=True, alpha=0.25)
        self.curves.setMenuEnabled(False)
        self.plan_plot: pg.PlotItem = self.graphics.addPlot(row=2, col=0)
        self.plan_plot.setMenuEnabled(False)
        self.plan_plot.setTitle("Plan: sparsity per tensor", size="10pt")
        self.plan_label = QLabel("Plan: blue, the sparsity each tensor would get; grey, uniform pruning to the same "
                                 "target.", objectName="planLabel", wordWrap=True)
        self.plan_bars = pg.BarGraphItem(x=[], height=[], width=0.4)
        self.uniform_bars = pg.BarGraphItem(x=[], height=[], width=0.4)
        self.plan_plot.addItem(self.uniform_bars)
        self.plan_plot.addItem(self.plan_bars)
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)
        self.graphics.ci.layout.setRowStretchFactor(2, 2)
        self.curves.setXLink(self.heat)

        self._layout()
        self.run_button.clicked.connect(self.request_scan)
        self.inputs_button.clicked.connect(self._choose_inputs)
        self.plan_button.clicked.connect(self.make_plan)
        self.apply_button.clicked.connect(self.apply_plan)
        self.save_button.clicked.connect(self._save_plan)
        self.csv_button.clicked.connect(self._save_csv)
        self.graphics.scene().sigMouseClicked.connect(self._on_click)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        session.document_replaced.connect(lambda _doc: self.clear())
        session.model_changed.connect(self._stale)
        session.selection_changed.connect(lambda _items: self._mark())
        self.clear()

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(QLabel("Tensors"))
        top.addWidget(self.targets, 1)
        top.addWidget(QLabel("Method"))
        top.addWidget(self.method)
        second = QHBoxLayout()
        second.addWidget(QLabel("Levels"))
        second.addWidget(self.levels, 1)
        second.addWidget(self.inputs_button)
        second.addWidget(self.run_button)
        plan = QHBoxLayout()
        plan.addWidget(QLabel("Target sparsity"))
        for widget in (self.target, self.plan_button, self.apply_button, self.save_button, self.csv_button):
            plan.addWidget(widget)
        plan.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addLayout(second)
        layout.addWidget(self.summary)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(plan)
        layout.addWidget(self.plan_label)
        layout.addWidget(self.info)

    # -- public API ----------------------------------------------------------------------------------------------
    def clear(self) -> None:
        self.result, self.plan = None, None
        self.image.clear()
        self.curves.clear()
        self.lines = []
        self.marks.setData(x=[], y=[])
        self.plan_bars.setOpts(x=[], height=[])
        self.uniform_bars.setOpts(x=[], height=[])
        self._enable()

    def request_scan(self) -> None:
        """Ask for a scan with the current settings (the controller runs it as a job and calls :meth:`show`)."""
        try:
            levels = parse_levels(self.levels.text())
        except SparseGUIError as exc:
            show_error(self, "Cannot scan", exc)
            return
        method = str(self.method.currentData())
        targets = [t.strip() for t in self.targets.text().split(",") if t.strip()] or ["*.weight"]
        inputs = self.inputs
        self.scan_requested.emit(lambda doc, progress, cancel: scan(doc, targets, levels, method, inputs=inputs,
                                                                    progress=progress, cancel=cancel))

    def set_inputs(self, path: str) -> None:
        self.inputs = load_inputs(path)
        self.inputs_path = path
        self.inputs_button.setText(f"Inputs: {Path(path).name}")
        self.inputs_button.setToolTip(self.inputs.describe())

    def show(self, result: Sensitivity) -> None:  # type: ignore[override]
        """Draw a finished scan."""
        self.result, self.plan = result, None
        names = [c.name for c in result.curves]
        matrix = result.matrix()
        finite = matrix[np.isfinite(matrix)]
        top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        self.colorbar.setLevels((0.0, top))
        self.colorbar.setLabel("right", result.signal.replace("_", " "))
        self.image.setImage(matrix, autoLevels=False, levels=(0.0, top))
        self.image.setRect(QRectF(-0.5, -0.5, len(result.levels), len(names)))
        width = self.name_axis.set_roles(names)
        for plot in (self.curves, self.plan_plot):
            plot.getAxis("left").setWidth(width)
        for axis in self.level_axes:
            axis.levels = list(result.levels)
            axis.picture = None
        self.heat.setTitle(f"{result.signal.replace('_', ' ')} per tensor and level", size="10pt")
        self.heat.getViewBox().setLimits(xMin=-0.5, xMax=len(result.levels) - 0.5, yMin=-0.5, yMax=len(names) - 0.5)
        self.heat.setRange(xRange=(-0.5, len(result.levels) - 0.5), yRange=(-0.5, len(names) - 0.5), padding=0)
        self.curves.clear()
        self.lines = []
        self.curves.setTitle("a curve per tensor (the selected ones in orange)", size="10pt")
        for i, curve in enumerate(result.curves):
            pen = pg.mkPen(pg.intColor(i, hues=max(len(names), 9), alpha=160), width=1.2)
            self.lines.append((self.curves.plot(np.arange(len(result.levels)), np.array(curve.values), pen=pen), pen))
        self.summary.setText(f"{len(names)} tensors × {len(result.levels)} levels of {result.method}: "
                             f"{result.signal.replace('_', ' ')}. Click a cell to preview that prune in the Mask tab "
                             "(not applied). The model is unchanged.")
        self._mark()
        self._enable()

    def make_plan(self) -> Plan | None:
        """Plan the target sparsity on the last scan and draw it against uniform pruning."""
        if self.result is None:
            return None
        try:
            self.plan = make_plan(self.result, self.session.state, self.target.value() / 100.0)
        except SparseGUIError as exc:
            show_error(self, "Cannot plan", exc)
            return None
        plan = self.plan
        planned, uniform = plan.sparsity(), plan.sparsity(plan.uniform)
        x = np.arange(len(plan.names))
        self.plan_bars.setOpts(x=x + 0.2, height=[planned[n] for n in plan.names], width=0.4, brush=PRUNED_BRUSH,
                               pen=None)
        self.uniform_bars.setOpts(x=x - 0.2, height=[uniform[n] for n in plan.names], width=0.4,
                                  brush=UNPRUNED_BRUSH, pen=None)
        self.plan_plot.setTitle(f"Plan for {plan.target:.1%} overall: sparsity per tensor", size="10pt")
        self.plan_label.setText(f"Blue: the plan ({plan.rule}), summed {plan.signal.replace('_', ' ')} "
                                f"{plan.planned_signal:.3f}. Grey: uniform pruning, {plan.uniform_signal:.3f}. "
                                f"Overall {plan.overall:.2%} of {sum(plan.numel.values()):,} entries.")
        self.plan_plot.setRange(xRange=(-1, len(plan.names)), yRange=(0, 1.02), padding=0)
        self._enable()
        return plan

    def apply_plan(self) -> None:
        if self.plan is not None:
            self.plan_apply_requested.emit(self.plan.recipe(), f"Applying a plan for {self.plan.target:.1%}")

    def preview_cell(self, row: int, column: int) -> bool:
        """Select the tensor of ``row`` and show its mask at level ``column`` in the Mask tab (not applied)."""
        result = self.result
        if result is None or not (0 <= row < len(result.curves) and 0 <= column < len(result.levels)):
            return False
        name, level = result.curves[row].name, result.levels[column]
        settings = {k: v for k, v in result.settings.items() if k in ("n", "dim", "seed")}
        step = PruneStep(result.method, (name,), amount=level, **settings)
        self.session.select([Selection("tensor", name)])
        try:
            planned = self.session.document.plan(step).tensors[name]
        except SparseGUIError as exc:
            show_error(self, "Cannot preview", exc)
            return False
        self.preview.emit(name, planned, f"{result.method} {level:g} on {name}")
        return True

    def save_png(self, path: str | Path) -> Path:
        return export_png(self.graphics, path)

    def save_svg(self, path: str | Path) -> Path:
        return export_svg(self.graphics, path, "Sensitivity")

    # -- internals -----------------------------------------------------------------------------------------------
    def _enable(self) -> None:
        self.plan_button.setEnabled(self.result is not None)
        self.csv_button.setEnabled(self.result is not None)
        self.apply_button.setEnabled(self.plan is not None)
        self.save_button.setEnabled(self.plan is not None)

    def _stale(self) -> None:
        """The model changed: the plan was for the state before (its counts would no longer mean the same)."""
        if self.plan is not None:
            self.plan = None
            self.plan_bars.setOpts(x=[], height=[])
            self.uniform_bars.setOpts(x=[], height=[])
            self.plan_plot.setTitle("Plan: sparsity per tensor", size="10pt")
            self.plan_label.setText("The model changed: plan again (and scan again if the scanned tensors changed).")
        self._enable()

    def _mark(self) -> None:
        if self.result is None:
            return
        chosen = {s.name for s in self.session.selection if s.kind == "tensor"}
        rows = [i for i, c in enumerate(self.result.curves) if c.name in chosen]
        for i, (line, pen) in enumerate(self.lines):
            line.setPen(pg.mkPen(SELECTED_BRUSH, width=3) if i in rows else pen)
            line.setZValue(1 if i in rows else 0)
        self.marks.setData(x=[x for _ in rows for x in range(len(self.result.levels))],
                           y=[r for r in rows for _ in self.result.levels])

    def _choose_inputs(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Sample inputs", "", "Tensors (*.pt *.pth *.safetensors)")
        if not path:
            return
        try:
            self.set_inputs(path)
        except SparseGUIError as exc:
            show_error(self, "Cannot use these inputs", exc)

    def _save_plan(self) -> None:
        if self.plan is not None:
            plan = self.plan
            self._save_as("Save plan as a recipe", "plan.json", "Recipes (*.json)", "Cannot save the plan",
                          lambda path: save_recipe_data(plan.recipe(), path))

    def _save_csv(self) -> None:
        if self.result is not None:
            text = self.result.to_csv()
            self._save_as("Export scan", "sensitivity.csv", "CSV (*.csv)", "Cannot export the scan",
                          lambda path: write_text_atomic(path, text))

    def _save_as(self, title: str, name: str, filters: str, failure: str, write: Callable[[str], object]) -> None:
        """Ask where, then ``write`` there; a refusal is a dialog."""
        path, _ = QFileDialog.getSaveFileName(self, title, name, filters)
        if path:
            try:
                write(path)
            except SparseGUIError as exc:
                show_error(self, failure, exc)

    def _cell_at(self, pos: QPointF) -> tuple[int, int] | None:
        """(tensor row, level column) under ``pos``."""
        if self.result is None:
            return None
        return grid_cell(self.heat, pos, len(self.result.curves), len(self.result.levels))

    def _on_click(self, event: Any) -> None:
        if event.button() != pg.QtCore.Qt.MouseButton.LeftButton:
            return
        cell = self._cell_at(event.scenePos())
        if cell is not None:
            self.preview_cell(*cell)

    def _on_mouse_moved(self, pos: QPointF) -> None:
        cell = self._cell_at(pos)
        plan, box = self.plan, self.plan_plot.getViewBox()
        if cell is None and plan is not None and box.sceneBoundingRect().contains(pos):
            index = round(box.mapSceneToView(pos).x())
            if 0 <= index < len(plan.names):
                name = plan.names[index]
                self.info.setText(f"{name}: plan {plan.sparsity()[name]:.2%} (prune {plan.counts[name]:,} more), "
                                  f"uniform {plan.sparsity(plan.uniform)[name]:.2%}")
                return
        if cell is None or self.result is None:
            self.info.setText(" ")
            return
        curve, level = self.result.curves[cell[0]], self.result.levels[cell[1]]
        value = curve.values[cell[1]]
        shown = f"{value:.4f}" if math.isfinite(value) else "n/a"
        self.info.setText(f"{curve.name} at {level:g}: {self.result.signal.replace('_', ' ')} {shown}")
