"""The mask view: one tensor as an image (mask, |weight| or effective weight), with a colour bar and a cursor
readout. The pixels come from :mod:`sparsegui.core.render`; this module only shows them."""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from pathlib import Path

import pyqtgraph as pg
import torch
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QFontMetrics, QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from sparsegui.core.axes import axis_name
from sparsegui.core.bitmask import BitMask
from sparsegui.core.names import split
from sparsegui.core.nm import parse_nm
from sparsegui.core.render import Layout, RenderedTensor, is_kept, render_values, state_parts
from sparsegui.core.render_nm import NMPicture, render_nm
from sparsegui.gui.background import LatestOnly
from sparsegui.gui.plot_files import export_png, export_svg
from sparsegui.gui.session import Selection, Session

pg.setConfigOptions(imageAxisOrder="row-major")

MODES = {"mask": "Mask", "magnitude": "|Weight|", "effective": "Effective weight", "nm": "N:M groups"}
NM_PATTERNS = ("2:4", "1:4", "4:8", "1:2")
NM_COLOURS = pg.ColorMap([0.0, 1.0], [(40, 40, 48), (235, 64, 52)])
COLORMAPS = ["Auto", "viridis", "inferno", "cividis", "CET-L1", "CET-D1"]
TENSOR_KINDS = ("tensor", "parameter", "buffer")
GAP_COLOR = "#6e6e6e"
EMPTY_TITLE = "Select a tensor in the model tree to see its mask"
BACKGROUND_LIMIT = 1 << 24  # tensors with more entries are rendered in a background thread


def two_colour(cmap: pg.ColorMap) -> pg.ColorMap:
    """A map with only the end colours of ``cmap``: 0 (pruned) and 1 (kept), nothing in between."""
    low, high = cmap.map(0.0, mode="qcolor"), cmap.map(1.0, mode="qcolor")
    return pg.ColorMap(pos=[0.0, 0.5, 0.5, 1.0], color=[low, low, high, high])


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + " × ".join(str(s) for s in shape) + ")" if shape else "(scalar)"


def _span(what: str, span: range) -> str:
    return f"{what} {span.start}" if len(span) == 1 else f"{what}s {span.start}–{span.stop - 1}"


class _TileAxis(pg.AxisItem):
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


class MaskView(QWidget):
    """Shows the first selected tensor of ``session`` as an image; re-renders when the model changes."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("maskView")
        self.session = session
        self.qualname: str | None = None
        self.rendered: RenderedTensor | None = None
        self.nm: NMPicture | None = None
        self._mask: torch.Tensor | BitMask | None = None
        self._title = EMPTY_TITLE
        self._background = LatestOnly(self)

        self.mode_combo = QComboBox(objectName="maskModeCombo")
        for mode, label in MODES.items():
            self.mode_combo.addItem(label, mode)
        self.nm_combo = QComboBox(objectName="maskNmCombo")
        self.nm_combo.addItems(NM_PATTERNS)
        self.nm_combo.setToolTip("N:M = N kept of every M consecutive entries along the input axis; red: groups "
                                 "with more than N nonzeros")
        self.nm_label = QLabel("Pattern:")
        self.nm_combo.setVisible(False)
        self.nm_label.setVisible(False)
        self.colormap_combo = QComboBox(objectName="maskColormapCombo")
        self.colormap_combo.addItems(COLORMAPS)
        self.colormap_combo.setToolTip("Auto: two colours for masks, viridis for |weight|, diverging for signs")
        self.cursor_label = QLabel(" ", objectName="maskCursorLabel")
        self.cursor_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setObjectName("maskGraphics")
        self.left_axis, self.bottom_axis = _TileAxis("left"), _TileAxis("bottom")
        self.plot: pg.PlotItem = self.graphics.addPlot(axisItems={"left": self.left_axis, "bottom": self.bottom_axis})
        self.plot.invertY(True)
        self.plot.setMenuEnabled(False)
        self.backdrop = QGraphicsRectItem()  # shows through the NaN gaps between conv tiles
        self.backdrop.setBrush(pg.mkBrush(GAP_COLOR))
        self.backdrop.setPen(pg.mkPen(None))
        self.backdrop.setZValue(-1)
        self.plot.addItem(self.backdrop, ignoreBounds=True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=pg.colormap.get("viridis"), interactive=False,
                                        width=18, colorMapMenu=False)
        self.colorbar.setImageItem(self.image, insert_in=self.plot)
        self.colorbar.axis.setWidth(None)  # ColorBarItem fixes 45 px, too narrow for "pruned" beside the label

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Show:"))
        controls.addWidget(self.mode_combo)
        controls.addWidget(self.nm_label)
        controls.addWidget(self.nm_combo)
        controls.addWidget(QLabel("Colours:"))
        controls.addWidget(self.colormap_combo)
        controls.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(controls)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.cursor_label)

        self.mode_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.nm_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.colormap_combo.currentIndexChanged.connect(lambda _i: self._apply_colormap())
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        session.selection_changed.connect(self._on_selection)
        session.model_changed.connect(self._on_model_changed)
        session.document_replaced.connect(lambda _doc: self.clear())
        self.clear()

    # -- public API ----------------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return str(self.mode_combo.currentData())

    @property
    def title(self) -> str:
        return self._title

    def set_mode(self, mode: str) -> None:
        index = self.mode_combo.findData(mode)
        if index < 0:
            raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
        self.mode_combo.setCurrentIndex(index)

    def set_colormap(self, name: str) -> None:
        index = self.colormap_combo.findText(name)
        if index < 0:
            raise ValueError(f"unknown colour map {name!r}; choose one of: {', '.join(COLORMAPS)}")
        self.colormap_combo.setCurrentIndex(index)

    def show_tensor(self, qualname: str) -> bool:
        """Show tensor ``qualname`` (``"conv1.weight"``, ``"conv1.weight_orig"``…); False (and a message) if the
        model has no such tensor or it has no values."""
        new = qualname != self.qualname
        self.qualname = qualname
        return self._render(reset_view=new)

    def refresh(self) -> None:
        """Render the current tensor again (after a model change or a mode switch), keeping the zoom."""
        if self.qualname is not None:
            self._render(reset_view=False)

    def clear(self) -> None:
        self._background.cancel()
        self.qualname = None
        self.rendered = None
        self.nm = None
        self._mask = None
        self.image.clear()
        self.backdrop.setRect(QRectF())
        self._set_title(EMPTY_TITLE)
        self.cursor_label.setText(" ")

    def save_png(self, path: str | Path) -> Path:
        return export_png(self.graphics, path)

    def save_svg(self, path: str | Path) -> Path:
        return export_svg(self.graphics, path, self._title)

    def readout(self, x: float, y: float) -> str:
        """The cursor text for view coordinates ``(x, y)`` (picture columns and rows), also shown in the label."""
        text = self._describe(x, y)
        self.cursor_label.setText(text or " ")
        return text

    # -- rendering -----------------------------------------------------------------------------------------------
    def _render(self, reset_view: bool) -> bool:
        """Render the current tensor: at once when it is small, in a background thread when reading it would stall
        the window (the image appears when ready; a newer request overtakes an older one)."""
        qualname, mode = self.qualname, self.mode
        assert qualname is not None
        self.nm_combo.setVisible(mode == "nm")
        self.nm_label.setVisible(mode == "nm")
        module_name, _, local = qualname.rpartition(".")
        try:
            values, mask = state_parts(self.session.document.structure, self.session.state, module_name, local)
            job = self._job(values, mask, mode)
        except (KeyError, TypeError, ValueError) as exc:
            self._show_error(qualname, exc)
            return False
        if values.numel() <= BACKGROUND_LIMIT:
            self._background.cancel()
            try:
                rendered = job()
            except (TypeError, ValueError) as exc:
                self._show_error(qualname, exc)
                return False
            self._show(qualname, values, mask, rendered, reset_view)
            return True
        self._set_title(f"{qualname} {_shape_text(tuple(values.shape))} — rendering…")

        def shown(rendered: RenderedTensor | NMPicture) -> None:
            if self.qualname == qualname and self.mode == mode:
                self._show(qualname, values, mask, rendered, reset_view)

        self._background.submit(job, shown, lambda exc: self._show_error(qualname, exc))
        return True

    def _job(self, values: torch.Tensor, mask: torch.Tensor | BitMask | None, mode: str
             ) -> Callable[[], RenderedTensor | NMPicture]:
        """What renders the picture (in any thread): N:M groups need the tensor's input axis."""
        if mode != "nm":
            return lambda: render_values(values, mask, mode)
        keep, group = parse_nm(self.nm_combo.currentText())
        axes = self.axes()
        if "in" not in axes:
            raise ValueError("N:M groups run along a weight's input axis, and this tensor has none that is known")
        dim = axes.index("in")
        if values.shape[dim] % group:
            raise ValueError(f"its input axis (dim {dim}) has {values.shape[dim]} entries, not a multiple of {group}")
        return lambda: render_nm(values, mask, keep, group, dim)

    @property
    def rendering(self) -> bool:
        """True while a big tensor is being rendered in the background."""
        return self._background.busy

    def _show_error(self, qualname: str, exc: BaseException) -> None:
        self.rendered, self._mask, self.nm = None, None, None
        self.image.clear()
        self.backdrop.setRect(QRectF())
        self.cursor_label.setText(" ")
        self._set_title(f"{qualname}: {exc}")

    def _show(self, qualname: str, values: torch.Tensor, mask: torch.Tensor | BitMask | None,
              picture: RenderedTensor | NMPicture, reset_view: bool) -> None:
        nm = picture if isinstance(picture, NMPicture) else None
        rendered = picture.rendered if isinstance(picture, NMPicture) else picture
        self.rendered, self._mask, self.nm = rendered, mask, nm
        self._apply_colormap()
        self.image.setImage(rendered.image, levels=rendered.levels, autoLevels=False)
        rows, cols = rendered.image.shape
        rect = QRectF(0, 0, cols * rendered.col_step, rows * rendered.row_step)
        self.image.setRect(rect)
        self.backdrop.setRect(rect if rendered.layout.gap else QRectF())
        self.cursor_label.setText(" ")
        self.colorbar.setLevels(rendered.levels)
        self._set_axes(rendered.layout)
        title = f"{qualname} {_shape_text(tuple(values.shape))} — {MODES[self.mode]}"
        if nm is not None:
            title = (f"{qualname} {_shape_text(tuple(values.shape))} — {nm.keep}:{nm.group} groups along dim "
                     f"{nm.dim}: {nm.compliance:.2%} compliant; red: more than {nm.keep} nonzeros")
        if rendered.downsampled:
            title += f" (downsampled ×{rendered.factor}: {rendered.row_step}×{rendered.col_step} blocks, "
            title += {"mask": "fraction kept)", "nm": "share in such groups)"}.get(self.mode, "mean |w|)")
        self._set_title(title)
        if reset_view:  # square pixels keep conv kernels square; matrices fill the view
            aspect = rendered.layout.rows / max(1, rendered.layout.cols)
            self.plot.setAspectLocked(rendered.layout.kind == "conv-grid" and 1 / 8 <= aspect <= 8)
            self.plot.autoRange(padding=0.02)

    def _colormap(self) -> pg.ColorMap:
        choice = self.colormap_combo.currentText()
        rendered = self.rendered
        if choice == "Auto" and rendered is not None and rendered.mode == "nm":
            return NM_COLOURS if rendered.downsampled else two_colour(NM_COLOURS)
        if choice == "Auto":
            signed = rendered is not None and rendered.signed
            choice = "CET-D1" if signed else "viridis"
        cmap = pg.colormap.get(choice)
        if rendered is not None and rendered.mode == "mask" and not rendered.downsampled:
            return two_colour(cmap)
        return cmap

    def _apply_colormap(self) -> None:
        self.colorbar.setColorMap(self._colormap())
        if self.rendered is not None:
            self.colorbar.setLevels(self.rendered.levels)
        labels = {"mask": "mask", "magnitude": "|weight|", "effective": "weight", "nm": "N:M groups"}
        label = labels[self.mode]
        if self.rendered is not None and self.rendered.downsampled:
            label = {"mask": "fraction kept", "nm": "share in groups over N"}.get(self.mode, "mean |weight| per block")
        self.colorbar.setLabel("right", label)
        exact = self.rendered is not None and not self.rendered.downsampled
        ticks = {"mask": [(0.25, "pruned"), (0.75, "kept")], "nm": [(0.25, "ok"), (0.75, "over N")]}
        self.colorbar.axis.setTicks([ticks[self.mode]] if exact and self.mode in ticks else None)

    def axes(self) -> tuple[str | None, ...]:
        """The roles of the shown tensor's dimensions (``out``, ``in``…; None where unknown)."""
        if self.qualname is None:
            return ()
        structure = self.session.document.structure
        module, local = split(self.qualname)
        canonical = structure.slots.get((module, local.removesuffix("_orig").removesuffix("_mask")))
        return structure.tensors[canonical].axes if canonical is not None else ()

    def _set_axes(self, layout: Layout) -> None:
        axes = self.axes()
        first, second = axis_name(axes, 0), axis_name(axes, 1)
        names = {
            "matrix": (f"row ({first})", f"column ({second})"),
            "conv-grid": (f"{first} channel", f"{second} channel"),
            "conv1d": (f"{first} channel", f"{second} channel × k"),
            "flattened": (first, "trailing dims, flattened"),
            "strip": ("", f"index ({first})" if axes and axes[0] else "index"),
            "scalar": ("", ""),
        }
        left_text, bottom_text = names[layout.kind]
        self.plot.setLabel("left", left_text)
        self.plot.setLabel("bottom", bottom_text)
        conv = layout.kind == "conv-grid"
        kh, kw = layout.tile
        self.left_axis.set_tiles((layout.shape[0], kh, kh + layout.gap) if conv else None)
        self.bottom_axis.set_tiles((layout.shape[1], kw, kw + layout.gap) if conv else None)

    def _set_title(self, text: str) -> None:
        """Show ``text`` above the image, elided to the view's width: pyqtgraph widens the plot to fit its title,
        which would push the colour bar out of sight."""
        self._title = text
        font = self.font()
        font.setPointSize(10)
        # the title sits above the image only: leave room for the left axis and the colour bar beside it
        beside = max(self.left_axis.width(), 60) + max(self.colorbar.width(), 62) + 30
        width = max(80, int(self.graphics.width() - beside))
        shown = QFontMetrics(font).elidedText(text, Qt.TextElideMode.ElideRight, width)
        self.plot.setTitle(escape(shown), size="10pt")
        self.graphics.setToolTip(text if shown != text else "")

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._set_title(self._title)

    # -- cursor --------------------------------------------------------------------------------------------------
    def _on_mouse_moved(self, pos: QPointF) -> None:
        if self.plot.sceneBoundingRect().contains(pos):
            point = self.plot.getViewBox().mapSceneToView(pos)
            self.readout(point.x(), point.y())

    def _describe(self, x: float, y: float) -> str:
        rendered = self.rendered
        if rendered is None or not (math.isfinite(x) and math.isfinite(y)):
            return ""
        probe = rendered.probe(math.floor(y / rendered.row_step), math.floor(x / rendered.col_step))
        if probe is None:
            return ""
        index = ", ".join(str(i) for i in probe.index)
        if rendered.mode == "nm" and self.nm is not None:
            where = f"{self.qualname}[{index}]" if probe.exact else \
                f"{_span('row', probe.rows)}, {_span('col', probe.cols)} (from {self.qualname}[{index}])"
            share = f"more than {self.nm.keep} nonzeros in its group of {self.nm.group}" if probe.exact and \
                probe.value else "its group is compliant" if probe.exact else f"{probe.value:.0%} in groups over N"
            return f"{where}: {share}"
        if not probe.exact:
            what = f"{probe.value:.0%} kept" if rendered.mode == "mask" else f"mean |w| {probe.value:.4g}"
            return f"{_span('row', probe.rows)}, {_span('col', probe.cols)} (from {self.qualname}[{index}]): {what}"
        if rendered.mode == "mask":
            return f"{self.qualname}[{index}]: {'kept' if probe.value else 'pruned'}"
        text = f"{self.qualname}[{index}] = {probe.value + 0.0:.6g}"
        if self._mask is not None:
            text += " · kept" if is_kept(self._mask, probe.index) else " · pruned"
        return text

    def _on_selection(self, items: list[Selection]) -> None:
        if items and items[0].kind in TENSOR_KINDS:
            self.show_tensor(items[0].name)

    def _on_model_changed(self) -> None:
        if self.qualname is not None and self.session.is_touched(self.qualname):
            self.refresh()

