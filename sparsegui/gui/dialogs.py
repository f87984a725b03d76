"""Small dialogs: Open with Architecture, About."""

from __future__ import annotations

import platform

import torch
from PySide6 import __version__ as pyside_version
from PySide6.QtCore import qVersion
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

from sparsegui import __version__
from sparsegui.core.devices import list_devices
from sparsegui.core.errors import LoadError
from sparsegui.core.loading import LoadOptions, parse_arch_kwargs

CHECKPOINT_FILTER = (
    "Checkpoints (*.pt *.pth *.bin *.ckpt *.safetensors *.json *.h5 *.hdf5 *.pt2);;"
    "PyTorch (*.pt *.pth *.bin *.ckpt);;safetensors (*.safetensors *.safetensors.index.json);;"
    "HDF5 (*.h5 *.hdf5);;All files (*)"
)


class ArchitectureDialog(QDialog):
    """A checkpoint plus ``package.module:factory``, JSON keyword arguments and an optional import folder."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("architectureDialog")
        self.setWindowTitle("Open with Architecture")
        self.path = QLineEdit(objectName="archCheckpoint")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.factory = QLineEdit(objectName="archFactory", placeholderText="package.module:factory")
        self.kwargs = QLineEdit(objectName="archKwargs", placeholderText='{"num_classes": 10}')
        self.extra_path = QLineEdit(objectName="archPath", placeholderText="optional folder to import from")
        self.key = QLineEdit(objectName="archKey", placeholderText="optional state_dict key (e.g. ema)")
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("Checkpoint", row)
        form.addRow("Factory", self.factory)
        form.addRow("Keyword arguments", self.kwargs)
        form.addRow("Import path", self.extra_path)
        form.addRow("Key", self.key)
        self.error = QLabel(objectName="archError", wordWrap=True)
        self.error.setStyleSheet("color: #c0392b;")
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.path.setText(path)

    def options(self) -> LoadOptions:
        return LoadOptions(
            key=self.key.text().strip() or None,
            arch=self.factory.text().strip() or None,
            arch_kwargs=parse_arch_kwargs(self.kwargs.text().strip()),
            arch_path=self.extra_path.text().strip() or None,
        )

    def _accept(self) -> None:
        try:
            if not self.path.text().strip():
                raise LoadError("choose a checkpoint file")
            if not self.factory.text().strip():
                raise LoadError("enter a factory such as mypackage.models:resnet18")
            self.options()
        except LoadError as exc:
            self.error.setText(str(exc))
            return
        self.accept()


def about_text() -> str:
    devices = "<br>".join(f"{d.id}: {d.name}" for d in list_devices())
    return (
        f"<h3>SparseGUI {__version__}</h3>"
        "<p>See and shape sparsity in PyTorch checkpoints with torch.nn.utils.prune.</p>"
        f"<p>torch {torch.__version__} · Qt {qVersion()} · PySide6 {pyside_version} · "
        f"Python {platform.python_version()}</p><p><b>Devices</b><br>{devices}</p>"
    )


def show_about(parent: QWidget | None) -> None:
    QMessageBox.about(parent, "About SparseGUI", about_text())
