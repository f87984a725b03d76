"""Screenshots of the app on a model, as a user sees it: the main window on each central tab, after a recipe.

    QT_QPA_PLATFORM=offscreen python scripts/screenshots.py MODEL [--recipe R.json] [--select NAME] --out DIR

Writes DIR/<stem>_<tab>.png for the Mask, Sparsity and Blocks tabs (Blocks only when the model has repeated
blocks). Used for the README's pictures; open them and look.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from sparsegui.gui.app import configure_application
from sparsegui.gui.main_window import MainWindow
from sparsegui.gui.session import Selection


def settle(app: QApplication, window: MainWindow, seconds: float = 600.0) -> None:
    """Process events until no job, count or render is pending."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        if not window.controller.busy and not window.controller.counter.running and not window.refresh_pending():
            for _ in range(20):
                app.processEvents()
                time.sleep(0.01)
            return
        time.sleep(0.02)
    raise TimeoutError("the app did not settle")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--recipe")
    parser.add_argument("--select", help="tensor to select before the screenshots")
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", default="1400x900")
    parser.add_argument("--metric", choices=["sparsity", "norm_removed"], default="sparsity",
                        help="what the charts show")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv)
    configure_application()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    settings = tempfile.TemporaryDirectory()  # a fresh window, as on first start: no saved layout
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings.name)
    window = MainWindow()
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    window.controller.open_path(args.model)
    settle(app, window)
    if args.recipe:
        window.controller.apply_recipe(args.recipe)
        settle(app, window)
    if args.select:
        window.session.select([Selection("tensor", args.select)])
        settle(app, window)
    window.sparsity_chart.show_metric(args.metric)
    window.blocks_view.show_metric(args.metric)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.model.rstrip("/")).name
    for index in range(window.tabs.count()):
        if not window.tabs.isTabVisible(index):
            continue
        window.tabs.setCurrentIndex(index)
        settle(app, window)
        suffix = "" if args.metric == "sparsity" else f"_{args.metric}"
        path = out / f"{stem}_{window.tabs.tabText(index).lower()}{suffix}.png"
        window.grab().save(str(path))
        print(path)
    window.session.document.history.mark_clean()
    window.close()
    settings.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
