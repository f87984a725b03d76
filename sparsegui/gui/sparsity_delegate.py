"""Painting for the module tree: the sparsity column's number-plus-bar delegate and one small icon per row kind.

Both take their colours from the widget's palette (or from mid-tone hues that read on light and dark themes), and
the icons are drawn in code, so no resource files are needed.
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QCoreApplication, QModelIndex, QPersistentModelIndex, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem

SPARSITY_ROLE = Qt.ItemDataRole.UserRole + 1  # same value as tree_model.SPARSITY_ROLE
TEXT_WIDTH = 48

# mid-tone hues: readable on white and on dark grey
KIND_COLOURS = {
    "module": "#3b82c4",
    "tensor": "#2e9e5b",
    "pruned": "#d9822b",
    "parameter": "#8e5bc4",
    "buffer": "#7a8791",
    "mask": "#d9822b",
    "hook": "#c4453b",
}
KIND_LETTERS = {"module": "M", "tensor": "T", "pruned": "", "parameter": "P", "buffer": "B", "mask": "", "hook": "H"}


class SparsityDelegate(QStyledItemDelegate):
    """Draws ``29.6%`` followed by a bar filled to the row's :data:`SPARSITY_ROLE`; other rows draw as usual."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        value = index.data(SPARSITY_ROLE)
        if value is None:
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        text, opt.text = opt.text, ""
        style = opt.widget.style() if opt.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        palette = opt.palette
        ink = palette.highlightedText().color() if selected else palette.text().color()
        fill = palette.highlightedText().color() if selected else palette.highlight().color()
        rect = opt.rect.adjusted(4, 0, -4, 0)
        painter.save()
        painter.setPen(ink)
        text_rect = rect.adjusted(0, 0, -(rect.width() - TEXT_WIDTH), 0)
        painter.drawText(text_rect, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), text)
        bar_left = rect.left() + TEXT_WIDTH + 6
        bar_width = rect.right() - bar_left
        if bar_width > 8:
            height = max(4, min(10, rect.height() // 2 - 1))
            track = QRectF(bar_left, rect.center().y() - height / 2 + 1, bar_width, height)
            faint = QColor(fill)
            faint.setAlpha(60)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(faint)
            painter.drawRoundedRect(track, 2, 2)
            painter.setBrush(fill)
            painter.drawRoundedRect(QRectF(track.left(), track.top(), track.width() * min(1.0, value),
                                           track.height()), 2, 2)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        hint = super().sizeHint(option, index)
        return QSize(max(hint.width(), TEXT_WIDTH + 70), hint.height())


def kind_icon(kind: str) -> QIcon | None:
    """The icon of a row kind, or None before a QGuiApplication exists (pixmaps need one)."""
    return _kind_icon(kind) if isinstance(QCoreApplication.instance(), QGuiApplication) else None


@cache
def _kind_icon(kind: str) -> QIcon:
    """A 16 px badge for a row kind: a coloured rounded square with a letter; a pruned tensor's and a mask's
    badge is a checkerboard (some entries gone)."""
    colour = QColor(KIND_COLOURS.get(kind, "#7a8791"))
    icon = QIcon()
    for size in (16, 32):
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        unit = size / 16
        box = QRectF(1 * unit, 1 * unit, 14 * unit, 14 * unit)
        if kind in ("pruned", "mask"):
            painter.setPen(QPen(colour, unit))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(box, 2 * unit, 2 * unit)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            cell = 4 * unit
            for row in range(3):
                for col in range(3):
                    if (row + col) % 2 == 0:
                        painter.drawRect(QRectF(2 * unit + col * cell, 2 * unit + row * cell, cell, cell))
        else:
            # a light ring keeps the badge visible on a selection highlight of a similar hue
            painter.setPen(QPen(QColor(255, 255, 255, 220), unit))
            painter.setBrush(colour)
            if kind == "hook":
                painter.drawEllipse(box)
            else:
                painter.drawRoundedRect(box, 3 * unit, 3 * unit)
        letter = KIND_LETTERS.get(kind, "")
        if letter and kind not in ("pruned", "mask"):
            font = QFont()
            font.setPixelSize(int(11 * unit))
            font.setBold(True)
            painter.setFont(font)
            painter.setPen(QColor("white"))
            painter.drawText(box, int(Qt.AlignmentFlag.AlignCenter), letter)
        painter.end()
        for mode in (QIcon.Mode.Normal, QIcon.Mode.Active, QIcon.Mode.Selected):
            icon.addPixmap(pixmap, mode)  # the style's generated "selected" tint hides the badge on highlight
    return icon
