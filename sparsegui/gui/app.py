"""Starting the desktop app: ``sparsegui [PATH]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from sparsegui import __version__
from sparsegui.collector import freeze_survivors
from sparsegui.core.document import Document
from sparsegui.core.loading import LoadOptions, parse_arch_kwargs
from sparsegui.gui.errors import ExceptionHandler
from sparsegui.gui.help import app_icon

if TYPE_CHECKING:
    from sparsegui.gui.autosave import Autosaver
    from sparsegui.gui.main_window import MainWindow

APP_ID = "io.github.sparsegui.SparseGUI"


def configure_application() -> QApplication:
    """The QApplication with SparseGUI's names (QSettings location) and pyqtgraph's row-major images."""
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    QCoreApplication.setOrganizationName("SparseGUI")
    QCoreApplication.setApplicationName("SparseGUI")
    QCoreApplication.setApplicationVersion(__version__)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    QGuiApplication.setDesktopFileName(APP_ID)
    assert isinstance(app, QApplication)
    app.setWindowIcon(app_icon())
    return app


def start(args: argparse.Namespace, autosave: Path | None = None) -> tuple[MainWindow, Autosaver]:
    """The main window, shown, with what the last session left offered back (a bad autosave is moved aside and
    reported once, and never stops the start) and then the file asked for on the command line."""
    from sparsegui.gui.autosave import Autosaver, offer_restore, pending, report_problem
    from sparsegui.gui.main_window import MainWindow
    from sparsegui.gui.session import Session

    window = MainWindow(Session(Document.demo(args.demo or "lenet")))
    freeze_survivors()  # what exists now lives as long as the app: out of the collector's sight
    previous = pending(autosave)
    autosaver = Autosaver(window.controller, autosave)
    window.show()
    if previous.problem is not None:
        report_problem(window, previous)
    if previous.data is not None and offer_restore(window, window.controller, previous.data):
        pass
    elif args.path:
        options = LoadOptions(key=args.key, arch=args.arch, arch_kwargs=parse_arch_kwargs(args.arch_kwargs),
                              arch_path=args.arch_path, trust=args.trust)
        window.controller.open_path(args.path, options)
    return window, autosaver


def run_app(args: argparse.Namespace) -> int:
    app = configure_application()
    handler = ExceptionHandler()
    handler.install()
    window, autosaver = start(args)
    handler.set_parent(window)
    code = app.exec()
    window.controller.runner.wait()
    window.stop_background()
    autosaver.discard()  # a normal exit: the user already chose to keep or discard their changes
    handler.uninstall()
    return int(code)
