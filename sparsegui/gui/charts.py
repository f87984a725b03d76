"""Charts of the whole model and of one tensor: per-tensor sparsity bars (here) and a histogram of |weight|
(:mod:`sparsegui.gui.histogram`).

Both read the model through the session's document and redraw on ``model_changed``, so undo, redo and every operation
show up without anyone telling them. The bars take their counts from ``session.totals`` (a tensor not counted yet
shows no bar until the background count reaches it).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Signal
from PySide6.QtGui import QFontMetrics, QShowEvent
from PySide6.QtWidgets import QApplication, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from sparsegui.core.stats import Count, Totals
from sparsegui.core.targets import model_order
from sparsegui.gui.histogram import BACKGROUND_LIMIT, WeightHistogram
from sparsegui.gui.plot_files import export_png, export_svg
from sparsegui.gui.session import Selection, Session

__all__ = ["BACKGROUND_LIMIT", "METRICS", "SparsityChart", "WeightHistogram", "abbreviate", "metric_combo",
           "metric_value"]

PRUNED_BRUSH = "#4c9be8"
UNPRUNED_BRUSH = "#8c8c8c"
SELECTED_BRUSH = "#ffb000"


def abbreviate(name: str, limit: int = 20) -> str:
    """A short label for a tensor name: a final ``weight``/``bias`` becomes ``w``/``b`` and the parents above the
    module keep their initials (``encoder.layers.0.self_attn.out_proj.weight`` → ``e.l.0.sa.out_proj.w``); what
    is still too long keeps its last dotted parts."""
    parts = name.split(".")
    parts[-1] = {"weight": "w", "bias": "b"}.get(parts[-1], parts[-1])
    for i in range(len(parts) - 2):
        if not parts[i].isdigit():
            parts[i] = "".join(word[:1] for word in parts[i].split("_") if word)
    short, cut = ".".join(parts), False
    while len(short) > limit and short.count(".") > 1:
        short, cut = short.split(".", 1)[1], True
    if len(short) > limit - cut:
        short, cut = short[-(limit - 1):], True
    return "…" + short if cut else short


def _share(counts: list[Count]) -> str:
    """``sparsity 20.00% · 47,870 of 59,838 parameters remain`` (``counting…`` while some are not counted)."""
    numel = sum(c.numel for c in counts)
    if any(c.zeros is None for c in counts):
        return f"counting zeros… ({numel:,} parameters)"
    zeros = sum(c.zeros or 0 for c in counts)
    return f"sparsity {zeros / numel if numel else 0.0:.2%} · {numel - zeros:,} of {numel:,} parameters remain"


class _NameAxis(pg.AxisItem):
    """A bottom axis labelling integer positions with tensor names, thinning and abbreviating them to fit."""

    def __init__(self) -> None:
        super().__init__("bottom")
        self.names: list[str] = []
        self._full_width = self._short_width = 1.0
        self._short = False

    def set_names(self, names: list[str]) -> None:
        self.names = names
        metrics = QFontMetrics(self.style["tickFont"] or self.font())
        self._full_width = max((metrics.horizontalAdvance(n) for n in names), default=1) + 12
        self._short_width = max((metrics.horizontalAdvance(abbreviate(n)) for n in names), default=1) + 12
        self.picture = None
        self.update()

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:
        low, high = max(0, math.ceil(minVal)), min(len(self.names) - 1, math.floor(maxVal))
        if high < low or size <= 0:
            return []
        count = high - low + 1
        self._short = count * self._full_width > size
        fit = max(1, int(size // (self._short_width if self._short else self._full_width)))
        step = max(1, math.ceil(count / fit))
        start = math.ceil(low / step) * step
        return [(float(step), [float(v) for v in range(start, high + 1, step)])]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        labels = []
        for value in values:
            i = round(value)
            name = self.names[i] if 0 <= i < len(self.names) else ""
            labels.append(abbreviate(name) if self._short else name)
        return labels


class _PercentAxis(pg.AxisItem):
    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [f"{v * 100:.0f}%" for v in values]


METRICS = {"sparsity": ("Sparsity", "sparsity (share of zeros)"),
           "norm_removed": ("Norm removed", "norm removed ‖W ⊙ (1 − M)‖ / ‖W‖")}
"""What the charts can show per tensor: key → (menu text, axis label)."""


def chart_layout(widget: QWidget, combo: QComboBox, summary: QLabel, graphics: QWidget, info: QLabel) -> None:
    """The layout the chart tabs share: "Show: [metric]" and a summary on top, the plots, a readout below."""
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(2, 2, 2, 2)
    top = QHBoxLayout()
    top.addWidget(QLabel("Show:"))
    top.addWidget(combo)
    top.addWidget(summary, 1)
    layout.addLayout(top)
    layout.addWidget(graphics, 1)
    layout.addWidget(info)


def grid_cell(plot: pg.PlotItem, scene_pos: QPointF, rows: int, columns: int) -> tuple[int, int] | None:
    """The (row, column) of a heatmap drawn one unit per cell in ``plot`` under ``scene_pos``, if any."""
    box = plot.getViewBox()
    if not box.sceneBoundingRect().contains(scene_pos):
        return None
    point = box.mapSceneToView(scene_pos)
    row, column = round(point.y()), round(point.x())
    return (row, column) if 0 <= row < rows and 0 <= column < columns else None


def metric_combo(name: str) -> QComboBox:
    """The "Show:" choice of the charts: sparsity or norm removed."""
    combo = QComboBox(objectName=name)
    for key, (text, _label) in METRICS.items():
        combo.addItem(text, key)
    combo.setToolTip("Sparsity: the share of zeros. Norm removed: ‖W ⊙ (1 − M)‖ / ‖W‖, how much of the weights' "
                     "norm (as loaded) the zeros took.")
    return combo


def metric_value(totals: Totals, name: str, metric: str) -> float | None:
    """Tensor ``name``'s sparsity or norm removed (None while not known; NaN norms count as unknown)."""
    if metric == "norm_removed":
        value = totals.norm_removed(name)
        return None if value is None or math.isnan(value) else value
    return totals.tensor(name).sparsity


class SparsityChart(QWidget):
    """Per-tensor sparsity (or norm removed) bars for the whole model; clicking a bar selects that tensor."""

    tensor_clicked = Signal(str)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sparsityChart")
        self.session = session
        self.names: list[str] = []
        self.sparsities = np.zeros(0)
        self.pruned: list[bool] = []
        self.tensors: dict[str, tuple[tuple[int, ...], Count, bool]] = {}  # name → (shape, count, pruned)
        self._stale = self._stale_names = True

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setObjectName("sparsityGraphics")
        self.name_axis = _NameAxis()
        self.plot: pg.PlotItem = self.graphics.addPlot(
            axisItems={"bottom": self.name_axis, "left": _PercentAxis("left")}
        )
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.showGrid(y=True, alpha=0.25)
        self.tracks = pg.BarGraphItem(x=[], height=[], width=0.8)  # a faint full-height column per tensor
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8)
        self.plot.addItem(self.tracks)
        self.plot.addItem(self.bars)
        self.graphics.setToolTip("Blue: pruned tensors · grey: not pruned · orange: selected. Click a bar to "
                                 "select its tensor; scroll to zoom.")
        self.summary_label = QLabel(" ", objectName="sparsitySummaryLabel", wordWrap=True)
        self.info_label = QLabel(" ", objectName="sparsityInfoLabel")
        self.metric_combo = metric_combo("sparsityMetric")
        self.metric_combo.currentIndexChanged.connect(lambda _i: self.refresh())

        chart_layout(self, self.metric_combo, self.summary_label, self.graphics, self.info_label)

        self.graphics.scene().sigMouseClicked.connect(self._on_click)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        session.model_changed.connect(self.refresh)
        session.counts_changed.connect(self.refresh)
        session.document_replaced.connect(lambda _doc: self.refresh())
        session.selection_changed.connect(lambda _items: self._on_selection())
        self.refresh()

    # -- public API ----------------------------------------------------------------------------------------------
    @property
    def heights(self) -> np.ndarray:
        """The bar heights: each tensor's share of zeros (or norm removed), 0–1, in ``names`` order."""
        return self.sparsities.copy()

    @property
    def metric(self) -> str:
        """What the bars show: ``"sparsity"`` or ``"norm_removed"``."""
        return str(self.metric_combo.currentData())

    def show_metric(self, metric: str) -> None:
        self.metric_combo.setCurrentIndex(self.metric_combo.findData(metric))

    def _on_selection(self) -> None:
        if self.isVisible():
            self._paint_bars()
            self._summarize()
        else:
            self._stale = True

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self._draw(self._stale_names)

    def refresh(self) -> None:
        """Read every tensor's count from ``session.totals`` and redraw (each tensor once, under its canonical
        name); a hidden chart keeps its numbers current and draws when it is shown."""
        totals, state = self.session.totals, self.session.state
        tensors: dict[str, tuple[tuple[int, ...], Count, bool]] = {}
        for name in model_order(self.session.document.structure, state):
            ts = state.tensors[name]
            tensors[name] = (ts.values.shape, totals.tensor(name), ts.pruned)
        changed_names = list(tensors) != self.names
        self.tensors = tensors
        self.names = list(tensors)
        metric = self.metric
        self.sparsities = np.array([metric_value(totals, name, metric) or 0.0 for name in tensors], dtype=float)
        self.pruned = [p for _, _, p in tensors.values()]
        if not self.isVisible():  # drawing hundreds of bars and labels is what costs: do it when shown
            self._stale, self._stale_names = True, self._stale_names or changed_names
            return
        self._draw(changed_names)

    def _draw(self, changed_names: bool) -> None:
        self._stale, self._stale_names = False, False
        title, label = METRICS[self.metric]
        self.plot.setLabel("left", label)
        self.plot.setTitle(f"{title} per tensor", size="10pt")
        self.name_axis.set_names(self.names)
        self._paint_bars()
        self._summarize()
        count = len(self.names)
        self.plot.getViewBox().setLimits(xMin=-1, xMax=max(count, 1), yMin=-0.05, yMax=1.1)
        if changed_names:
            self.plot.setXRange(-1.0, max(count, 1), padding=0)
        self.plot.setYRange(-0.03, 1.03, padding=0)

    def _summarize(self) -> None:
        """The whole model's sparsity and, when tensors are selected, the selection's (what a global prune over the
        selection makes exact)."""
        counts = [c for _, c, _ in self.tensors.values()]
        text = f"Overall {_share(counts)} · {sum(self.pruned)} of {len(self.names)} tensors pruned"
        canonical = self.session.document.structure.canonical
        chosen = {canonical.get(s.name, s.name) for s in self.session.selection if s.kind == "tensor"}
        picked = [self.tensors[n][1] for n in self.names if n in chosen]
        if len(picked) > 1:
            text += f" · selection ({len(picked)} tensors): {_share(picked)}"
        self.summary_label.setText(text)

    def select_tensor(self, qualname: str) -> None:
        """What a click on ``qualname``'s bar does: emit ``tensor_clicked`` and select it in the session."""
        self.tensor_clicked.emit(qualname)
        self.session.select([Selection("tensor", qualname)])

    def bar_at(self, x: float) -> str | None:
        """The tensor whose bar spans view x-coordinate ``x``."""
        i = round(x)
        if 0 <= i < len(self.names) and abs(x - i) <= 0.45:
            return self.names[i]
        return None

    def save_png(self, path: str | Path) -> Path:
        return export_png(self.graphics, path)

    def save_svg(self, path: str | Path) -> Path:
        return export_svg(self.graphics, path, "Sparsity per tensor")

    # -- internals -----------------------------------------------------------------------------------------------
    def _paint_bars(self) -> None:
        selected = {s.name for s in self.session.selection if s.kind == "tensor"}
        brushes = [
            SELECTED_BRUSH if name in selected else PRUNED_BRUSH if pruned else UNPRUNED_BRUSH
            for name, pruned in zip(self.names, self.pruned, strict=True)
        ]
        x = np.arange(len(self.names))
        self.tracks.setOpts(x=x, height=np.ones(len(x)), width=0.8, brush=(255, 255, 255, 22), pen=None)
        self.bars.setOpts(x=x, height=self.sparsities, width=0.8, brushes=brushes, pen=None)

    def _view_x(self, scene_pos: QPointF) -> float | None:
        if not self.plot.getViewBox().sceneBoundingRect().contains(scene_pos):
            return None
        return float(self.plot.getViewBox().mapSceneToView(scene_pos).x())

    def _on_click(self, event: object) -> None:
        if event.button() != pg.QtCore.Qt.MouseButton.LeftButton:  # type: ignore[attr-defined]
            return
        x = self._view_x(event.scenePos())  # type: ignore[attr-defined]
        name = None if x is None else self.bar_at(x)
        if name is not None:
            self.select_tensor(name)

    def _on_mouse_moved(self, pos: QPointF) -> None:
        x = self._view_x(pos)
        name = None if x is None else self.bar_at(x)
        if name is None or name not in self.tensors:
            self.info_label.setText(" ")
            return
        dims, count, pruned = self.tensors[name]
        shape = " × ".join(str(s) for s in dims) or "scalar"
        zeros = "zeros not counted yet" if count.zeros is None else \
            f"{count.sparsity or 0.0:.2%} zeros, {count.zeros:,} of {count.numel:,}"
        norm = self.session.totals.norm_removed(name)
        removed = "" if norm is None or math.isnan(norm) else f", norm removed {norm:.2%}"
        self.info_label.setText(f"{name} ({shape}): {zeros}{removed}" + (" · pruned" if pruned else ""))


def _preview() -> None:  # pragma: no cover - manual preview
    from sparsegui.core.document import Document

    app = QApplication.instance() or QApplication(sys.argv)
    session = Session(Document.demo("lenet"))
    doc = session.document
    doc.prune("ln_structured", ["conv2.weight"], amount=0.5, n=2, dim=0)
    doc.prune("l1_unstructured", ["conv2.weight", "fc1.weight"], amount=0.3)
    doc.global_prune("l1_unstructured", ["fc2.weight", "fc3.weight"], amount=0.5)
    session.state_changed()
    window = QWidget()
    layout = QVBoxLayout(window)
    layout.addWidget(SparsityChart(session))
    layout.addWidget(WeightHistogram(session))
    session.select([Selection("tensor", "fc1.weight")])
    window.resize(900, 800)
    window.show()
    app.exec()


if __name__ == "__main__":
    _preview()
