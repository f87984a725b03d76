"""Pieces of the mask view: the two-colour map, shape and span text, and the axis that labels conv tiles."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtGui import QFontMetrics


def two_colour(cmap: pg.ColorMap) -> pg.ColorMap:
    """A map with only the end colours of ``cmap``: 0 (pruned) and 1 (kept), nothing in between."""
    low, high = cmap.map(0.0, mode="qcolor"), cmap.map(1.0, mode="qcolor")
    return pg.ColorMap(pos=[0.0, 0.5, 0.5, 1.0], color=[low, low, high, high])


def shape_text(shape: tuple[int, ...]) -> str:
    return "(" + " × ".join(str(s) for s in shape) + ")" if shape else "(scalar)"


def span_text(what: str, span: range) -> str:
    return f"{what} {span.start}" if len(span) == 1 else f"{what}s {span.start}–{span.stop - 1}"


class TileAxis(pg.AxisItem):
    """An axis that labels conv tiles by channel (at tile centres, thinned to fit the zoom) instead of pixels."""

    def __init__(self, orientation: str) -> None:
        super().__init__(orientation)
        self.tiles: tuple[int, int, int] | None = None  # (count, tile size, pitch incl. gap)

    def set_tiles(self, tiles: tuple[int, int, int] | None) -> None:
        self.tiles = tiles
        self.picture = None
        self.update()

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:
        if self.tiles is None:
            return super().tickValues(minVal, maxVal, size)
        count, extent, pitch = self.tiles
        minVal, maxVal = sorted((minVal, maxVal))  # an inverted axis passes them the other way round
        first, last = max(0, math.ceil((minVal - extent / 2) / pitch)), min(count - 1, math.floor(maxVal / pitch))
        if last < first or size <= 0:
            return []
        label = QFontMetrics(self.font()).horizontalAdvance(str(count - 1)) + 10
        need = label if self.orientation in ("top", "bottom") else 16
        per_tile = size * pitch / max(maxVal - minVal, 1e-9)
        step = 1
        while step * per_tile < need:
            step *= 2
        start = math.ceil(first / step) * step
        return [(float(step * pitch), [c * pitch + extent / 2 for c in range(start, last + 1, step)])]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if self.tiles is None:
            return super().tickStrings(values, scale, spacing)
        _count, extent, pitch = self.tiles
        return [str(round((v - extent / 2) / pitch)) for v in values]
