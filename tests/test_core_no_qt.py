"""The core never imports Qt: the CLI, scripts and the GUI all drive the same Qt-free engine."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import sparsegui.core

QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "pyqtgraph", "qtpy")


def core_modules() -> list[str]:
    return ["sparsegui.core"] + [
        m.name for m in pkgutil.walk_packages(sparsegui.core.__path__, prefix="sparsegui.core.")
    ]


def test_every_core_module_imports_without_qt() -> None:
    """Importing every sparsegui.core module in a fresh interpreter loads no Qt (or pyqtgraph) module."""
    modules = core_modules()
    assert len(modules) > 15
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"core imported Qt modules: {result.stdout.strip()}"


def test_cli_inspect_runs_without_qt() -> None:
    """The headless CLI path (inspect) never loads Qt either."""
    code = (
        "import sys\n"
        "from sparsegui.cli import main\n"
        "main(['inspect', '--demo', 'lenet', '--json'])\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r})\n"
        "sys.stderr.write('QT:' + ','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip().endswith("QT:"), result.stderr
