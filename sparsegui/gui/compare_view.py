"""The Compare tab: the open model (as it is now) against another checkpoint, tensor by tensor.

File ▸ Compare With… opens the other checkpoint and runs :func:`sparsegui.core.diff.diff_documents` as a job. The tab
lists the tensors, most changed first; selecting one shows where each side has zeros and the difference: zeros only
in A (blue), only in B (red), in both (grey). The tree tints changed tensors (``Session.comparison``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sparsegui.core.diff import Diff, TensorDiff
from sparsegui.core.document import Document
from sparsegui.core.errors import SparseGUIError
from sparsegui.core.export.atomic import write_text_atomic
from sparsegui.core.render import render_values
from sparsegui.gui.errors import show_error
from sparsegui.gui.session import Selection, Session

HEADERS = ("tensor", "status", "sparsity A", "sparsity B", "changed", "rel. change", "zero Jaccard")
MAX_SIDE = 512  # pixels per panel side: big tensors are shown by density


def _number(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return "inf"
    return f"{value:.2%}" if percent else f"{value:.4g}"


def _density(tensor: torch.Tensor) -> np.ndarray:
    """The share of True entries per displayed pixel (the tensor laid out as the mask view does)."""
    return render_values(tensor.to(torch.uint8), None, "magnitude", max_rows=MAX_SIDE, max_cols=MAX_SIDE).image


def difference_image(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(zeros of A, zeros of B, RGB difference) as images: blue zero only in A, red only in B, grey both."""
    za, zb = a == 0, b == 0
    zeros_a, zeros_b = _density(za), _density(zb)
    only_a, only_b, both = _density(za & ~zb), _density(zb & ~za), _density(za & zb)
    rgb = np.stack([only_b * 230 + both * 140, both * 140 + only_a * 90, only_a * 255 + both * 140], axis=-1)
    return zeros_a, zeros_b, np.nan_to_num(np.clip(rgb, 0, 255)).astype(np.uint8)


class CompareView(QWidget):
    """The comparison table and the selected tensor's zeros on both sides."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compareView")
        self.session = session
        self.diff: Diff | None = None
        self.other: Document | None = None
        self.other_name = ""
        self.summary = QLabel("File ▸ Compare With… compares the open model with another checkpoint.",
                              objectName="compareSummary", wordWrap=True)
        self.table = QTableWidget(0, len(HEADERS), objectName="compareTable")
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.csv_button = QPushButton("Export CSV…", objectName="compareCsv")
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setObjectName("compareGraphics")
        self.panels: list[tuple[pg.PlotItem, pg.ImageItem]] = []
        for col, title in enumerate(("zeros in A", "zeros in B", "difference")):
            plot = self.graphics.addPlot(row=0, col=col, title=title)
            plot.invertY(True)
            plot.setAspectLocked(False)
            plot.setMenuEnabled(False)
            image = pg.ImageItem(axisOrder="row-major")
            plot.addItem(image)
            self.panels.append((plot, image))
        for plot, _ in self.panels[1:]:
            plot.setXLink(self.panels[0][0])
            plot.setYLink(self.panels[0][0])
        self.tensor_label = QLabel(" ", objectName="compareTensorLabel", wordWrap=True)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.csv_button)
        buttons.addStretch(1)
        left_layout.addLayout(buttons)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.tensor_label)
        right_layout.addWidget(self.graphics, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(left)
        split.addWidget(right)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.summary)
        layout.addWidget(split, 1)

        self.table.itemSelectionChanged.connect(self._on_row)
        self.csv_button.clicked.connect(self._save_csv)
        self.csv_button.setEnabled(False)
        session.document_replaced.connect(lambda _doc: self.clear())
        session.selection_changed.connect(lambda _items: self._show_selected())

    # -- public API ----------------------------------------------------------------------------------------------
    def clear(self) -> None:
        self.diff, self.other = None, None
        self.table.setRowCount(0)
        for _, image in self.panels:
            image.clear()
        self.csv_button.setEnabled(False)
        self.session.set_comparison(None)
        self.summary.setText("File ▸ Compare With… compares the open model with another checkpoint.")

    def show_diff(self, diff: Diff, other: Document, name: str) -> None:
        """Show a finished comparison of the open model (A) with ``other`` (B, opened from ``name``)."""
        self.diff, self.other, self.other_name = diff, other, name
        rows = diff.most_changed()
        self.table.setRowCount(len(rows))
        for r, t in enumerate(rows):
            cells = (t.name, t.status, _number(t.sparsity_a, True), _number(t.sparsity_b, True),
                     _number(t.changed_fraction, True), _number(t.relative_change), _number(t.zero_jaccard))
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        totals = diff.totals()
        self.summary.setText(f"A: the open model as it is now · B: {name}. {totals['changed']} changed, "
                             f"{totals['same']} same, {totals['shape_changed']} reshaped, {totals['only_a']} only "
                             f"in A, {totals['only_b']} only in B; {totals['changed_fraction']:.2%} of compared "
                             "entries differ. The tree tints changed tensors.")
        self.csv_button.setEnabled(True)
        self.session.set_comparison({t.name: t for t in diff.tensors})
        self._show_selected()

    def show_tensor(self, name: str) -> bool:
        """Draw tensor ``name``'s zeros on both sides and their difference (False when it is not on both)."""
        if self.diff is None or self.other is None:
            return False
        found: TensorDiff | None = next((t for t in self.diff.tensors if t.name == name), None)
        if found is None or found.status not in ("same", "changed"):
            self.tensor_label.setText(f"{name}: {found.status if found else 'not compared'} — nothing to draw")
            for _, image in self.panels:
                image.clear()
            return False
        a = self.session.state.tensors[name].effective().detach().cpu()
        b = self.other.state.tensors[name].effective().detach().cpu()
        for (_, image), picture in zip(self.panels, difference_image(a, b), strict=True):
            if picture.ndim == 2:
                image.setImage(picture, levels=(0.0, 1.0), autoLevels=False)
            else:
                image.setImage(picture, autoLevels=False)
        self.panels[0][0].autoRange(padding=0.02)
        self.tensor_label.setText(f"{name}: {found.status}, {_number(found.changed_fraction, True)} of entries "
                                  f"changed, relative change {_number(found.relative_change)}, zero Jaccard "
                                  f"{_number(found.zero_jaccard)} · difference: blue zero only in A, red only in "
                                  "B, grey both")
        return True

    # -- internals -----------------------------------------------------------------------------------------------
    def _on_row(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            name = self.table.item(rows[0].row(), 0).text()
            self.session.select([Selection("tensor", name)])

    def _show_selected(self) -> None:
        tensors = [s.name for s in self.session.selection if s.kind == "tensor"]
        if tensors and self.diff is not None:
            canonical = self.session.document.structure.canonical
            self.show_tensor(canonical.get(tensors[0], tensors[0]))

    def _save_csv(self) -> None:
        if self.diff is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export comparison", str(Path.cwd() / "diff.csv"), "CSV (*.csv)")
        if path:
            try:
                write_text_atomic(path, self.diff.to_csv())
            except SparseGUIError as exc:
                show_error(self, "Cannot export the comparison", exc)
