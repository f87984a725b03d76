"""Errors become readable dialogs: what failed and why, with details on demand. Nothing dies silently."""

from __future__ import annotations

import sys
import threading
import traceback
from types import TracebackType

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from sparsegui.core.errors import SparseGUIError


def show_error(parent: QWidget | None, title: str, exc: BaseException, details: str = "") -> None:
    """A warning dialog for an expected error (bad file, bad setting) or a critical one for a bug."""
    box = QMessageBox(parent)
    box.setObjectName("errorDialog")
    expected = isinstance(exc, (SparseGUIError, OSError))
    box.setIcon(QMessageBox.Icon.Warning if expected else QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(title)
    message = str(exc) or type(exc).__name__
    box.setInformativeText(message if expected else f"Unexpected {type(exc).__name__}: {message}")
    if details or not expected:
        box.setDetailedText(details or "".join(traceback.format_exception(exc)))
    box.exec()


class _Relay(QObject):
    raised = Signal(object, str)


class ExceptionHandler:
    """Installs ``sys.excepthook`` and ``threading.excepthook`` so exceptions in slots, timers and threads show a
    dialog (PySide6 would only print them)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self._parent = parent
        self._relay = _Relay()
        self._relay.raised.connect(self._show)
        self._previous_hook = sys.excepthook
        self._previous_thread_hook = threading.excepthook
        self.seen: list[BaseException] = []

    def install(self) -> None:
        sys.excepthook = self._hook
        threading.excepthook = self._thread_hook

    def uninstall(self) -> None:
        sys.excepthook = self._previous_hook
        threading.excepthook = self._previous_thread_hook

    def set_parent(self, parent: QWidget | None) -> None:
        self._parent = parent

    def _hook(self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            self._previous_hook(kind, exc, tb)
            return
        self._relay.raised.emit(exc, "".join(traceback.format_exception(kind, exc, tb)))

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
            self._relay.raised.emit(args.exc_value, text)

    def _show(self, exc: BaseException, details: str) -> None:
        self.seen.append(exc)
        sys.stderr.write(details)
        show_error(self._parent, "Something went wrong", exc, details)
