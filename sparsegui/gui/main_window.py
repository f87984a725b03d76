"""The main window: docks around a tabbed mask view and charts, menus and toolbar wired to the controller.

Every action that changes the model calls the controller, whose gate refuses while a job runs; disabling actions
while busy is only a hint to the eye, not what keeps the model safe.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from sparsegui.core.demos import DEMOS
from sparsegui.core.devices import list_devices
from sparsegui.core.document import Document
from sparsegui.gui.blocks_view import BlocksView
from sparsegui.gui.charts import SparsityChart, WeightHistogram
from sparsegui.gui.controller import Controller
from sparsegui.gui.details import DetailsView
from sparsegui.gui.dialogs import CHECKPOINT_FILTER, ArchitectureDialog, show_about
from sparsegui.gui.file_names import suggested_path
from sparsegui.gui.help import action_icon, app_icon, show_shortcuts
from sparsegui.gui.history_view import HistoryView
from sparsegui.gui.mask_view import MaskView
from sparsegui.gui.module_tree import ModuleTreeWidget
from sparsegui.gui.prune_panel import PrunePanel
from sparsegui.gui.session import Selection, Session

EXPORT_FILTER = "PyTorch (*.pt *.pth);;safetensors (*.safetensors);;HDF5 (*.h5)"


class MainWindow(QMainWindow):
    def __init__(self, session: Session | None = None) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowIcon(app_icon())
        self.session = session or Session()
        self.controller = Controller(self.session, self)
        self._close_after_export = False
        self.setAcceptDrops(True)
        self._build_widgets()
        self._build_docks()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_statusbar()
        self._connect()
        self._restore_settings()
        self._update_title()
        self._update_history_actions()

    # -- construction ------------------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.mask_view = MaskView(self.session)
        self.sparsity_chart = SparsityChart(self.session)
        self.histogram = WeightHistogram(self.session)
        charts = QSplitter(Qt.Orientation.Vertical, objectName="chartsSplitter")
        charts.addWidget(self.sparsity_chart)
        charts.addWidget(self.histogram)
        self.tabs = QTabWidget(objectName="centralTabs")
        self.tabs.addTab(self.mask_view, "Mask")
        self.tabs.addTab(charts, "Sparsity")
        self.blocks_view = BlocksView(self.session)
        self.tabs.addTab(self.blocks_view, "Blocks")
        self.tabs.setTabVisible(2, self.blocks_view.grid is not None)
        self.blocks_view.available.connect(lambda shown: self.tabs.setTabVisible(2, shown))
        self.opening_banner = QLabel(objectName="openingBanner", wordWrap=True)
        self.opening_banner.setStyleSheet("background: #d9822b; color: white; padding: 6px; font-weight: 600;")
        self.opening_banner.hide()
        central = QWidget(objectName="centralArea")
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.opening_banner)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.tree = ModuleTreeWidget(self.session)
        self.details = DetailsView(self.session)
        self.prune_panel = PrunePanel(self.session)
        self.history_view = HistoryView(self.controller)

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self, objectName=name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        self.tree_dock = self._dock("Modules", "modulesDock", self.tree, left)
        self.details_dock = self._dock("Details", "detailsDock", self.details, right)
        self.prune_dock = self._dock("Prune", "pruneDock", self.prune_panel, right)
        self.history_dock = self._dock("History", "historyDock", self.history_view, right)
        self.tabifyDockWidget(self.details_dock, self.history_dock)
        self.details_dock.raise_()

    def _action(self, text: str, slot: object, shortcut: QKeySequence | str | None = None, name: str = "") -> QAction:
        action = QAction(text, self, objectName=name or text.replace("…", "").replace(" ", "_").lower())
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)  # type: ignore[arg-type]
        return action

    def _build_actions(self) -> None:
        c = self.controller
        self.open_action = self._action("Open…", self.open_dialog, QKeySequence.StandardKey.Open, "openAction")
        self.open_folder_action = self._action("Open Folder…", self.open_folder_dialog, name="openFolderAction")
        self.arch_action = self._action("Open with Architecture…", self.open_with_architecture, name="archAction")
        self.recipe_action = self._action("Apply Recipe…", self.apply_recipe_dialog, name="applyRecipeAction")
        self.export_action = self._action("Export Pruned state_dict…", lambda: self.export_dialog(False),
                                          QKeySequence.StandardKey.Save, "exportAction")
        self.export_masks_state_action = self._action("Export state_dict with Masks…", lambda: self.export_dialog(True),
                                                      name="exportWithMasksAction")
        self.export_folder_action = self._action("Export Pruned Model Folder…", self.export_folder_dialog,
                                                 name="exportFolderAction")
        self.export_masks_action = self._action("Export Masks…", self.export_masks_dialog, name="exportMasksAction")
        self.export_recipe_action = self._action("Export Recipe…", self.export_recipe_dialog, name="exportRecipeAction")
        self.quit_action = self._action("Quit", self.close, "Ctrl+Q", "quitAction")
        self.undo_action = self._action("Undo", c.undo, QKeySequence.StandardKey.Undo, "undoAction")
        self.redo_action = self._action("Redo", c.redo, QKeySequence.StandardKey.Redo, "redoAction")
        self.redo_action.setShortcuts([QKeySequence(QKeySequence.StandardKey.Redo), QKeySequence("Ctrl+Y")])
        self.remove_all_action = self._action("Remove All Pruning", lambda: c.remove(["*"]), name="removeAllAction")
        self.prune_action = self._action("Prune…", lambda: (self.prune_dock.show(), self.prune_dock.raise_()),
                                         "Ctrl+P", "showPruneAction")
        self.about_action = self._action("About SparseGUI", lambda: show_about(self), name="aboutAction")
        self.shortcuts_action = self._action("Keyboard Shortcuts", lambda: show_shortcuts(self),
                                             QKeySequence.StandardKey.HelpContents, "shortcutsAction")
        for action, icon in ((self.open_action, "open"), (self.export_action, "export"), (self.undo_action, "undo"),
                             (self.redo_action, "redo"), (self.prune_action, "prune"),
                             (self.remove_all_action, "remove"), (self.tree.prune_action, "prune"),
                             (self.tree.remove_action, "remove"), (self.tree.undo_action, "undo")):
            action.setIcon(action_icon(icon))
        self.busy_actions = [self.open_action, self.open_folder_action, self.arch_action, self.recipe_action,
                             self.export_action, self.export_folder_action, self.export_masks_state_action,
                             self.export_masks_action, self.remove_all_action]

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.open_action)
        file_menu.addAction(self.open_folder_action)
        self.recent_menu = file_menu.addMenu("Open Recent")
        self.recent_menu.setObjectName("recentMenu")
        self.demo_menu = file_menu.addMenu("Open Demo Model")
        for name in DEMOS:
            self.demo_menu.addAction(self._action(name, lambda _=False, n=name: self.open_demo(n), name=f"demo_{name}"))
        file_menu.addAction(self.arch_action)
        file_menu.addSeparator()
        file_menu.addAction(self.recipe_action)
        file_menu.addSeparator()
        for action in (self.export_action, self.export_folder_action, self.export_masks_state_action,
                       self.export_masks_action, self.export_recipe_action):
            file_menu.addAction(action)
        image_menu = file_menu.addMenu("Export Image")
        for label, widget in (("Mask image", self.mask_view), ("Sparsity chart", self.sparsity_chart),
                              ("Histogram", self.histogram), ("Blocks chart", self.blocks_view)):
            image_menu.addAction(self._action(f"{label}…", lambda _=False, w=widget: self.export_image(w)))
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = bar.addMenu("&Edit")
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        edit_menu.addSeparator()
        edit_menu.addAction(self.prune_action)
        edit_menu.addAction(self.remove_all_action)
        view_menu = bar.addMenu("&View")
        for dock in (self.tree_dock, self.details_dock, self.prune_dock, self.history_dock):
            view_menu.addAction(dock.toggleViewAction())
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.shortcuts_action)
        help_menu.addAction(self.about_action)
        self._fill_recent(self.controller.recent_files())

    def _build_toolbar(self) -> None:
        toolbar = QToolBar("Main", self, objectName="mainToolbar")
        toolbar.addAction(self.open_action)
        toolbar.addAction(self.export_action)
        toolbar.addSeparator()
        toolbar.addAction(self.undo_action)
        toolbar.addAction(self.redo_action)
        toolbar.addSeparator()
        toolbar.addAction(self.prune_action)
        toolbar.addAction(self.remove_all_action)
        toolbar.addSeparator()
        toolbar.addWidget(QLabel(" Device "))
        self.device_combo = QComboBox(objectName="deviceCombo")
        for device in list_devices():
            memory = f" · {device.total_memory / 2**30:.0f} GiB" if device.total_memory else ""
            self.device_combo.addItem(f"{device.id} — {device.name}{memory}", device.id)
        toolbar.addWidget(self.device_combo)
        self.addToolBar(toolbar)

    def _build_statusbar(self) -> None:
        status = self.statusBar()
        status.setObjectName("statusBar")
        self.progress = QProgressBar(objectName="jobProgress", maximum=1000, maximumWidth=220)
        self.cancel_button = QPushButton("Cancel", objectName="cancelButton")
        self.count_label = QLabel(objectName="countLabel")
        self.device_label = QLabel(objectName="deviceLabel")
        status.addPermanentWidget(self.count_label)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.cancel_button)
        status.addPermanentWidget(self.device_label)
        self.progress.hide()
        self.cancel_button.hide()

    def _connect(self) -> None:
        c, s = self.controller, self.session
        c.status.connect(lambda text: self.statusBar().showMessage(text, 8000) if text else None)
        c.recent_changed.connect(self._fill_recent)
        c.runner.progressed.connect(self._on_progress)
        c.runner.started.connect(lambda label: self.statusBar().showMessage(label))
        c.history_changed.connect(self._update_title)
        c.history_changed.connect(self._update_history_actions)
        c.opening.connect(self._on_opening)
        c.counter.progressed.connect(self._on_counting)
        self.cancel_button.clicked.connect(c.runner.cancel)
        s.busy_changed.connect(self._on_busy)
        s.document_replaced.connect(self._on_document)
        s.model_changed.connect(self._update_device_label)
        self.prune_panel.apply_requested.connect(c.prune)
        self.prune_panel.remove_requested.connect(c.remove)
        self.tree.prune_requested.connect(lambda _items: (self.prune_dock.show(), self.prune_dock.raise_()))
        self.tree.remove_requested.connect(c.remove)
        self.tree.undo_requested.connect(c.undo)
        self.tree.show_mask_requested.connect(self._show_mask)
        self.sparsity_chart.tensor_clicked.connect(lambda _name: None)
        self.device_combo.activated.connect(lambda _i: c.move_to(str(self.device_combo.currentData())))
        self._update_device_label()

    def refresh_pending(self) -> bool:
        """Whether a view is still computing in the background what it will show (benchmarks and tests wait)."""
        return self.histogram.busy or self.mask_view.rendering

    # -- state shown in the chrome -----------------------------------------------------------------------------
    def _update_title(self, *_: object) -> None:
        doc = self.session.document
        name = Path(doc.source.path).name if doc.source.path else f"{doc.source.demo} (demo)"
        self.setWindowTitle(f"{name}[*] — SparseGUI")
        self.setWindowModified(doc.modified)

    def _update_history_actions(self) -> None:
        history = self.session.document.history
        busy = self.session.busy
        self.undo_action.setEnabled(not busy and history.can_undo)
        self.redo_action.setEnabled(not busy and history.can_redo)
        self.undo_action.setText(f"Undo {history.undo_label}" if history.undo_label else "Undo")
        self.redo_action.setText(f"Redo {history.redo_label}" if history.redo_label else "Redo")

    def _update_device_label(self) -> None:
        doc = self.session.document
        size = sum(slot.param.numel() * slot.param.element_size() for slot in doc.structure.tensors.values())
        self.device_label.setText(f"on {doc.device} · {size / 2**20:,.1f} MiB")
        index = self.device_combo.findData(str(doc.device))
        if index >= 0:
            self.device_combo.setCurrentIndex(index)

    def _on_progress(self, fraction: float, text: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(text)

    def _on_counting(self, fraction: float, text: str) -> None:
        self.count_label.setText(f"{text} ({fraction:.0%})" if text else "")

    def _on_opening(self, name: str) -> None:
        if name:
            shown = self.controller.shown_name()
            self.opening_banner.setText(f"Opening {name}… The model below is still {shown}.")
        self.opening_banner.setVisible(bool(name))

    def _on_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.progress.setValue(0)
        for action in self.busy_actions:
            action.setEnabled(not busy)
        self.demo_menu.setEnabled(not busy)
        self.recent_menu.setEnabled(not busy and bool(self.recent_menu.actions()))
        self.device_combo.setEnabled(not busy)
        self._update_history_actions()

    def _on_document(self, _doc: Document) -> None:
        self._update_title()
        self._update_history_actions()
        self._update_device_label()

    def _show_mask(self, name: str) -> None:
        self.session.select([Selection("tensor", name)])
        self.tabs.setCurrentWidget(self.mask_view)

    def _fill_recent(self, files: list[str]) -> None:
        self.recent_menu.clear()
        for path in files:
            self.recent_menu.addAction(self._action(path, lambda _=False, p=path: self.open_path(p)))
        self.recent_menu.setEnabled(bool(files) and not self.session.busy)

    # -- user actions ------------------------------------------------------------------------------------------
    def confirm_discard(self) -> bool:
        """Ask before dropping unexported changes (offering to export them); True if it is fine to go on now."""
        if not self.session.document.modified:
            return True
        answer = QMessageBox.question(
            self, "Unsaved changes", "The model has pruning changes that were not exported.",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        if answer == QMessageBox.StandardButton.Save:
            self.export_dialog(False)
            return False
        return answer == QMessageBox.StandardButton.Discard

    def open_path(self, path: str, options: object = None) -> None:
        if self.controller.gate(f"Opening {Path(path).name}") and self.confirm_discard():
            self.controller.open_path(path, options)  # type: ignore[arg-type]

    def open_demo(self, name: str) -> None:
        if self.controller.gate(f"Opening the {name} demo") and self.confirm_discard():
            self.controller.open_demo(name)

    def _start_folder(self) -> str:
        path = self.session.document.source.path
        return str(Path(path).parent) if path else ""

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", self._start_folder(), CHECKPOINT_FILTER)
        if path:
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open model folder", self._start_folder())
        if path:
            self.open_path(path)

    def open_with_architecture(self) -> None:
        dialog = ArchitectureDialog(self)
        if dialog.exec():
            self.open_path(dialog.path.text().strip(), dialog.options())

    def apply_recipe_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Apply recipe", self._start_folder(),
                                              "Recipes (*.json);;All files (*)")
        if path:
            self.controller.apply_recipe(path)

    def export_dialog(self, keep_masks: bool) -> bool:
        title = "Export state_dict with masks" if keep_masks else "Export pruned state_dict"
        suggested = suggested_path(self.session.document.source, "masked" if keep_masks else "pruned")
        path, _ = QFileDialog.getSaveFileName(self, title, suggested, EXPORT_FILTER)
        return bool(path) and self.controller.export(path, keep_masks=keep_masks)

    def export_folder_dialog(self) -> bool:
        """A new model folder (sharded safetensors, index, and the source folder's config and tokenizer files)."""
        path, _ = QFileDialog.getSaveFileName(self, "Export pruned model folder (a new folder name)",
                                              suggested_path(self.session.document.source, "folder"),
                                              "Model folder (*)")
        if not path:
            return False
        if Path(path).suffix:
            path = str(Path(path).with_suffix(""))
        return self.controller.export(path)

    def export_masks_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export masks", suggested_path(self.session.document.source,
                                                                                   "masks"), EXPORT_FILTER)
        if path:
            self.controller.export_masks(path)

    def export_recipe_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export recipe", suggested_path(self.session.document.source,
                                                                                    "recipe"), "Recipes (*.json)")
        if path:
            self.controller.export_recipe(path)

    def export_image(self, widget: QWidget) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export image", self._start_folder(),
                                              "PNG image (*.png);;SVG image (*.svg)")
        if not path:
            return
        if path.lower().endswith(".svg"):
            widget.save_svg(path)  # type: ignore[attr-defined]
        else:
            widget.save_png(path if path.lower().endswith(".png") else path + ".png")  # type: ignore[attr-defined]

    # -- Qt overrides ------------------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            event.acceptProposedAction()
            self.open_path(urls[0])

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.session.busy:
            self.controller.gate("Quit")
            event.ignore()
            return
        if not self.confirm_discard():
            event.ignore()
            return
        settings = QSettings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        event.accept()

    def _restore_settings(self) -> None:
        settings = QSettings()
        geometry = settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 920)
            self.resizeDocks([self.tree_dock, self.details_dock], [600, 400], Qt.Orientation.Horizontal)
            self.resizeDocks([self.details_dock, self.prune_dock], [470, 400], Qt.Orientation.Vertical)
        state = settings.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)


__all__ = ["MainWindow", "QMenu"]
