"""The main window's file dialogs: each asks for a path, then hands it to the controller (which gates it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QWidget

from sparsegui.gui.dialogs import CHECKPOINT_FILTER, ArchitectureDialog
from sparsegui.gui.file_names import suggested_path

if TYPE_CHECKING:
    from sparsegui.gui.controller import Controller
    from sparsegui.gui.session import Session

EXPORT_FILTER = "PyTorch (*.pt *.pth);;safetensors (*.safetensors);;HDF5 (*.h5)"


class FileDialogs:
    """Mixed into the main window (a QWidget with ``session``, ``controller`` and ``open_path``)."""

    session: Session
    controller: Controller

    def open_path(self, path: str, options: object = None) -> None:
        raise NotImplementedError

    def _start_folder(self) -> str:
        path = self.session.document.source.path
        return str(Path(path).parent) if path else ""

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self._parent(), "Open checkpoint", self._start_folder(),
                                              CHECKPOINT_FILTER)
        if path:
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self._parent(), "Open model folder", self._start_folder())
        if path:
            self.open_path(path)

    def open_with_architecture(self) -> None:
        dialog = ArchitectureDialog(self._parent())
        if dialog.exec():
            self.open_path(dialog.path.text().strip(), dialog.options())

    def apply_recipe_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self._parent(), "Apply recipe", self._start_folder(),
                                              "Recipes (*.json);;All files (*)")
        if path:
            self.controller.apply_recipe(path)

    def export_dialog(self, keep_masks: bool) -> bool:
        title = "Export state_dict with masks" if keep_masks else "Export pruned state_dict"
        suggested = suggested_path(self.session.document.source, "masked" if keep_masks else "pruned")
        path, _ = QFileDialog.getSaveFileName(self._parent(), title, suggested, EXPORT_FILTER)
        return bool(path) and self.controller.export(path, keep_masks=keep_masks)

    def export_folder_dialog(self) -> bool:
        """A new model folder (sharded safetensors, index, and the source folder's config and tokenizer files)."""
        path, _ = QFileDialog.getSaveFileName(self._parent(), "Export pruned model folder (a new folder name)",
                                              suggested_path(self.session.document.source, "folder"),
                                              "Model folder (*)")
        if not path:
            return False
        if Path(path).suffix:
            path = str(Path(path).with_suffix(""))
        return self.controller.export(path)

    def export_masks_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self._parent(), "Export masks",
                                              suggested_path(self.session.document.source, "masks"), EXPORT_FILTER)
        if path:
            self.controller.export_masks(path)

    def export_recipe_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self._parent(), "Export recipe",
                                              suggested_path(self.session.document.source, "recipe"),
                                              "Recipes (*.json)")
        if path:
            self.controller.export_recipe(path)

    def export_image(self, widget: QWidget) -> None:
        path, _ = QFileDialog.getSaveFileName(self._parent(), "Export image", self._start_folder(),
                                              "PNG image (*.png);;SVG image (*.svg)")
        if not path:
            return
        if path.lower().endswith(".svg"):
            widget.save_svg(path)  # type: ignore[attr-defined]
        else:
            widget.save_png(path if path.lower().endswith(".png") else path + ".png")  # type: ignore[attr-defined]

    def export_stats_dialog(self) -> None:
        """The per-tensor table with sizes: CSV, or a Netron attachment (.json)."""
        path, chosen = QFileDialog.getSaveFileName(self._parent(), "Export statistics",
                                                   suggested_path(self.session.document.source, "stats"),
                                                   "CSV (*.csv);;Netron attachment (*.json)")
        if not path:
            return
        if not Path(path).suffix:
            path += ".json" if "Netron" in chosen else ".csv"
        self.controller.export_stats(path)

    def export_script_dialog(self) -> None:
        """The session as a standalone PyTorch script (torch.nn.utils.prune only)."""
        source = self.session.document.source
        path, _ = QFileDialog.getSaveFileName(self._parent(), "Export Python script",
                                              str(Path(suggested_path(source, "recipe")).with_name("prune_session.py")),
                                              "Python (*.py)")
        if path:
            self.controller.export_script(path if path.endswith(".py") else path + ".py")

    def compare_dialog(self) -> None:
        """Compare the open model with another checkpoint (a file, or a model folder's index or config)."""
        path, _ = QFileDialog.getOpenFileName(self._parent(), "Compare with", self._start_folder(),
                                              CHECKPOINT_FILTER)
        if path:
            self.controller.compare_with(path, self._compared)

    def _compared(self, diff: object, other: object, name: str) -> None:
        view = self.compare_view  # type: ignore[attr-defined]
        view.show_diff(diff, other, name)
        self.tabs.setCurrentWidget(view)  # type: ignore[attr-defined]

    def _parent(self) -> QWidget:
        assert isinstance(self, QWidget)
        return self
