"""Saving what a pyqtgraph view shows: PNG through pyqtgraph's ImageExporter, SVG through QSvgGenerator."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtCore import QRect, QRectF, QSize
from PySide6.QtGui import QPainter
from PySide6.QtSvg import QSvgGenerator


def export_png(graphics: pg.GraphicsLayoutWidget, path: str | Path) -> Path:
    """Write what ``graphics`` shows to a PNG with pyqtgraph's ImageExporter (at least 800 px wide)."""
    exporter = pg.exporters.ImageExporter(graphics.ci)
    exporter.parameters()["width"] = max(800, graphics.width())
    exporter.export(str(path))
    return Path(path)


def export_svg(graphics: pg.GraphicsLayoutWidget, path: str | Path, title: str = "") -> Path:
    """Write what ``graphics`` shows to an SVG with QSvgGenerator (pyqtgraph's SVGExporter fails on Qt ≥ 6.11)."""
    size = graphics.size() if graphics.width() > 1 and graphics.height() > 1 else QSize(800, 600)
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(size)
    generator.setViewBox(QRect(0, 0, size.width(), size.height()))
    generator.setTitle(title)
    painter = QPainter(generator)
    try:
        graphics.scene().render(painter, QRectF(0, 0, size.width(), size.height()), graphics.ci.sceneBoundingRect())
    finally:
        painter.end()
    return Path(path)
