"""Histogram of ``|weight|`` of the selected tensor, with its pruned entries and the pruning threshold marked.

A tensor of more than ``BACKGROUND_LIMIT`` entries is histogrammed in a background thread (the mask view does not
wait for it); a big tensor is sampled evenly (``SAMPLE_LIMIT`` values), its pruned count and threshold are exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from sparsegui.core.render import Histogram, magnitude_histogram, state_parts
from sparsegui.gui.background import LatestOnly
from sparsegui.gui.mask_view import TENSOR_KINDS
from sparsegui.gui.plot_files import export_png, export_svg
from sparsegui.gui.session import Selection, Session

KEPT_FILL = (76, 155, 232, 170)
PRUNED_FILL = (230, 80, 80, 200)
THRESHOLD_COLOR = "#ffd23f"
SAMPLE_LIMIT = 1 << 22  # larger tensors are histogrammed from an even sample of this many values
BACKGROUND_LIMIT = 1 << 20  # larger tensors are histogrammed in a background thread


class WeightHistogram(QWidget):
    """Histogram of ``|weight|`` of the selected tensor (``|X_orig|`` when pruned, pruned entries in red) with the
    pruning threshold marked."""

    def __init__(self, session: Session, parent: QWidget | None = None, bins: int = 100) -> None:
        super().__init__(parent)
        self.setObjectName("weightHistogram")
        self.session = session
        self.bins = bins
        self.qualname: str | None = None
        self.edges = np.zeros(0)
        self.counts = np.zeros(0, dtype=np.int64)
        self.pruned_counts = np.zeros(0, dtype=np.int64)
        self.threshold: float | None = None
        self._shown: str | None = None  # the tensor the curves show
        self._background = LatestOnly(self)

        self.log_check = QCheckBox("Log count", objectName="histogramLogY")
        self.info_label = QLabel(" ", objectName="histogramInfoLabel")
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setObjectName("histogramGraphics")
        self.plot: pg.PlotItem = self.graphics.addPlot()
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("bottom", "|weight|")
        self.plot.setLabel("left", "count")
        self.all_curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=KEPT_FILL, pen=None)
        self.pruned_curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=PRUNED_FILL, pen=None)
        self.plot.addItem(self.all_curve)
        self.plot.addItem(self.pruned_curve)
        self.threshold_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(THRESHOLD_COLOR, width=2),
                                              label="threshold {value:.4g}",
                                              labelOpts={"position": 0.96, "color": THRESHOLD_COLOR,
                                                         "fill": (0, 0, 0, 190)})
        self.plot.addItem(self.threshold_line, ignoreBounds=True)

        top = QHBoxLayout()
        top.addWidget(self.info_label, 1)
        top.addWidget(self.log_check)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.graphics, 1)

        self.log_check.toggled.connect(self.set_log_y)
        session.selection_changed.connect(self._on_selection)
        session.model_changed.connect(self.refresh)
        session.document_replaced.connect(lambda _doc: self.clear())
        self.clear()

    # -- public API ----------------------------------------------------------------------------------------------
    def show_tensor(self, qualname: str) -> bool:
        self.qualname = qualname
        return self._render()

    def refresh(self) -> None:
        """Histogram the current tensor again if the last change touched it."""
        if self.qualname is not None and self.session.is_touched(self.qualname):
            self._render()

    def clear(self) -> None:
        self._background.cancel()
        self.qualname = None
        self._clear_curves()
        self.plot.setTitle("Select a tensor to see its |weight| histogram", size="10pt")
        self.info_label.setText(" ")

    def _clear_curves(self) -> None:
        self._shown = None
        self.edges = np.zeros(0)
        self.counts = self.pruned_counts = np.zeros(0, dtype=np.int64)
        self.threshold = None
        self.all_curve.setData([], [])
        self.pruned_curve.setData([], [])
        self.threshold_line.hide()
        self.info_label.setText(" ")

    def set_log_y(self, on: bool) -> None:
        if self.log_check.isChecked() != on:
            self.log_check.setChecked(on)  # calls back here through toggled
            return
        self.plot.setLogMode(y=on)  # the fill level 0 is then log10(count) = 0: bars start at a count of 1
        self._draw()

    def save_png(self, path: str | Path) -> Path:
        return export_png(self.graphics, path)

    def save_svg(self, path: str | Path) -> Path:
        return export_svg(self.graphics, path, "Weight histogram")

    # -- internals -----------------------------------------------------------------------------------------------
    def _render(self) -> bool:
        """Histogram the current tensor: at once when it is small, in a background thread when it is big (the
        result is applied when it comes, unless another tensor was chosen meanwhile)."""
        qualname = self.qualname
        assert qualname is not None
        module_name, _, local = qualname.rpartition(".")
        try:
            values, mask = state_parts(self.session.document.structure, self.session.state, module_name, local)
            if values.is_meta:
                raise ValueError("the tensor is on the meta device and has no values to show")
        except (KeyError, TypeError, ValueError) as exc:
            self._show_problem(qualname, exc)
            return False
        threshold = mask is not None

        def compute() -> Histogram:
            return magnitude_histogram(values, mask, self.bins, sample_limit=SAMPLE_LIMIT, threshold=threshold)

        source = f"|{qualname}_orig|" if mask is not None and not local.endswith("_orig") else f"|{qualname}|"
        done = lambda result: self._apply(qualname, source, mask is not None, result)  # noqa: E731
        if values.numel() <= BACKGROUND_LIMIT:
            self._background.cancel()
            done(compute())
            return True
        if self._shown != qualname:
            self._clear_curves()
        self.plot.setTitle(f"{source}: counting {values.numel():,} values…", size="10pt")
        self._background.submit(compute, done, lambda exc: self._show_problem(qualname, exc))
        return True

    @property
    def busy(self) -> bool:
        """Whether a histogram is being computed in the background."""
        return self._background.busy

    def _show_problem(self, qualname: str, exc: BaseException) -> None:
        self.clear()
        self.qualname = qualname
        self.plot.setTitle(f"{qualname}: {exc}", size="10pt")

    def _apply(self, qualname: str, source: str, masked: bool, result: Histogram) -> None:
        self._shown = qualname
        self.edges, self.counts, self.pruned_counts = result.edges, result.counts, result.pruned_counts
        self.threshold = result.threshold
        step, numel = result.step, result.numel
        self.plot.setLabel("left", "count" if step == 1 else f"count (1 value in {step})")
        self._draw()
        key = (f"<span style='color:{pg.mkColor(KEPT_FILL).name()}'>■ kept</span>  "
               f"<span style='color:{pg.mkColor(PRUNED_FILL).name()}'>■ pruned</span>") if masked else ""
        self.plot.setTitle(f"{source}: {numel:,} values  {key}", size="10pt")
        text = f"{qualname}: {result.pruned_total:,} of {numel:,} pruned ({result.pruned_total / max(numel, 1):.1%})"
        if self.threshold is not None:
            text += f" · threshold |w| ≤ {self.threshold:.4g}"
        self.info_label.setText(text)

    def _draw(self) -> None:
        if self.counts.size == 0:
            return
        log = self.log_check.isChecked()
        counts = self.counts.astype(float)
        pruned = self.pruned_counts.astype(float)
        if log:  # empty bins have no logarithm: show them as gaps
            counts[counts == 0] = np.nan
            pruned[pruned == 0] = np.nan
        self.all_curve.setData(self.edges, counts)
        self.pruned_curve.setData(self.edges, pruned)
        self.pruned_curve.setVisible(bool(self.pruned_counts.any()))
        if self.threshold is None:
            self.threshold_line.hide()
        else:
            self.threshold_line.show()
            self.threshold_line.setValue(self.threshold)
            self.threshold_line.label.setText(f"threshold {self.threshold:.4g}")  # it skips updates while hidden
            right_half = self.threshold > 0.6 * float(self.edges[-1])
            self.threshold_line.label.setAnchor((1.05, 0.5) if right_half else (-0.05, 0.5))
        self.plot.enableAutoRange()

    def _on_selection(self, items: list[Selection]) -> None:
        if items and items[0].kind in TENSOR_KINDS:
            self.show_tensor(items[0].name)

