"""Render the application icon into the freedesktop hicolor theme layout under packaging/icons/.

    QT_QPA_PLATFORM=offscreen python3 packaging/render_icons.py

writes ``icons/hicolor/NxN/apps/<app id>.png`` for every size in SIZES (rendered with QSvgRenderer from the packaged
SVG, so the PNGs are the artwork, not a screenshot of it) and copies the SVG to ``icons/hicolor/scalable/apps/``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

from sparsegui.gui.app import APP_ID
from sparsegui.resources import APP_ICON, resource_path

SIZES = (16, 32, 48, 64, 128, 256)
HERE = Path(__file__).resolve().parent


def render(svg: Path, size: int) -> QImage:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def main(out: Path = HERE / "icons" / "hicolor") -> int:
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    svg = resource_path(APP_ICON)
    for size in SIZES:
        target = out / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not render(svg, size).save(str(target), "PNG"):
            raise OSError(f"cannot write {target}")
        print(target)
    scalable = out / "scalable" / "apps" / f"{APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable)
    print(scalable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
