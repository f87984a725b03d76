"""The prune panel: method, amount, n/dim, seed and scope; invalid settings are explained in place."""

from __future__ import annotations

import contextlib
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from torch import nn

from sparsegui.core import operations as ops
from sparsegui.core.amounts import check_amount_fits, check_dim
from sparsegui.core.errors import SparseGUIError
from sparsegui.core.methods import GLOBAL_METHODS, MethodSpec, available_methods, load_plugin_file, resolve_method
from sparsegui.core.pruned import pruning_hooks
from sparsegui.core.targets import TensorRef
from sparsegui.gui.controller import PruneRequest
from sparsegui.gui.errors import show_error
from sparsegui.gui.session import Session

N_CHOICES = ["1", "2", "inf", "-inf", "fro", "nuc"]


def _pair(main: QWidget, side: QWidget) -> QHBoxLayout:
    """A form row: ``main`` takes the width, ``side`` sits at its right."""
    row = QHBoxLayout()
    row.addWidget(main, 1)
    row.addWidget(side)
    return row


class PrunePanel(QWidget):
    """Collects a :class:`PruneRequest`; ``apply_requested`` fires only for settings the core accepts."""

    apply_requested = Signal(object)
    remove_requested = Signal(list)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("prunePanel")
        self.session = session
        self.method = QComboBox(objectName="methodCombo")
        self.load_plugin = QPushButton("Load plugin…", objectName="loadPluginButton")
        self.amount = QDoubleSpinBox(objectName="amountSpin", decimals=2, maximum=100.0, value=30.0)
        self.amount_unit = QComboBox(objectName="amountUnit")
        self.amount_unit.addItems(["%", "entries"])
        self.n = QComboBox(objectName="nCombo", editable=True)
        self.n.addItems(N_CHOICES)
        self.n.setCurrentText("2")
        self.dim = QSpinBox(objectName="dimSpin", minimum=-8, maximum=8, value=0)
        self.seed = QSpinBox(objectName="seedSpin", minimum=0, maximum=2**31 - 1, value=0)
        self.random_seed = QCheckBox("new seed each time", objectName="randomSeed", checked=True)
        self.mask_path = QLineEdit(objectName="maskPath", placeholderText="mask file (.pt, .safetensors, .h5, .npy)")
        self.mask_browse = QPushButton("…", objectName="maskBrowse")
        self.scope_selected = QRadioButton("Selected tensors", objectName="scopeSelected", checked=True)
        self.scope_pattern = QRadioButton("Tensors matching", objectName="scopePattern")
        self.scope_global = QRadioButton("Global over the selection", objectName="scopeGlobal")
        self.scope_group = QButtonGroup(self)
        for button in (self.scope_selected, self.scope_pattern, self.scope_global):
            self.scope_group.addButton(button)
        self.pattern = QLineEdit("*.weight", objectName="patternEdit")
        self.types = QLineEdit(objectName="typesEdit", placeholderText="module types, e.g. Conv2d, Linear")
        self.problem = QLabel(objectName="problemLabel", wordWrap=True)
        self.problem.setStyleSheet("color: #c0392b;")
        self.apply_button = QPushButton("Apply", objectName="applyButton")
        self.remove_button = QPushButton("Remove pruning", objectName="removeButton")
        self.remove_all_button = QPushButton("Remove all", objectName="removeAllButton")
        self._layout()
        self._connect()
        self.refresh_methods()

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Method", _pair(self.method, self.load_plugin))
        form.addRow("Amount", _pair(self.amount, self.amount_unit))
        form.addRow("Norm n", self.n)
        form.addRow("Dim", self.dim)
        form.addRow("Seed", _pair(self.seed, self.random_seed))
        form.addRow("Mask", _pair(self.mask_path, self.mask_browse))
        self.form = form
        scope = QVBoxLayout()
        scope.addWidget(self.scope_selected)
        pattern_row = QHBoxLayout()
        pattern_row.addWidget(self.scope_pattern)
        pattern_row.addWidget(self.pattern, 1)
        scope.addLayout(pattern_row)
        scope.addWidget(self.types)
        scope.addWidget(self.scope_global)
        buttons = QHBoxLayout()
        buttons.addWidget(self.apply_button)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.remove_all_button)
        root = QVBoxLayout(self)
        root.addLayout(form)
        root.addWidget(QLabel("<b>Scope</b>"))
        root.addLayout(scope)
        root.addWidget(self.problem)
        root.addLayout(buttons)
        root.addStretch(1)

    def _connect(self) -> None:
        for signal in (self.method.currentIndexChanged, self.amount.valueChanged, self.amount_unit.currentIndexChanged,
                       self.n.currentTextChanged, self.dim.valueChanged, self.random_seed.toggled,
                       self.mask_path.textChanged, self.pattern.textChanged, self.types.textChanged,
                       self.scope_group.buttonToggled):
            signal.connect(self.validate)
        self.session.selection_changed.connect(self.validate)
        self.session.model_changed.connect(self.validate)
        self.session.document_replaced.connect(self.validate)
        self.session.busy_changed.connect(self.validate)
        self.amount_unit.currentIndexChanged.connect(self._unit_changed)
        self.load_plugin.clicked.connect(self._load_plugin)
        self.mask_browse.clicked.connect(self._browse_mask)
        self.apply_button.clicked.connect(self._apply)
        self.remove_button.clicked.connect(lambda: self.remove_requested.emit(self._pruned_selection()))
        self.remove_all_button.clicked.connect(lambda: self.remove_requested.emit(["*"]))

    def refresh_methods(self, select: str | None = None) -> None:
        current = select or self.method.currentData() or "l1_unstructured"
        self.method.blockSignals(True)
        self.method.clear()
        for name, spec in available_methods().items():
            label = name.rsplit(":", 1)[-1] if spec.origin.startswith("file") else name
            self.method.addItem(label, name)
            self.method.setItemData(self.method.count() - 1, spec.description, 3)  # tooltip
        index = self.method.findData(current)
        self.method.setCurrentIndex(max(index, 0))
        self.method.blockSignals(False)
        self.validate()

    def _unit_changed(self) -> None:
        percent = self.amount_unit.currentText() == "%"
        self.amount.setDecimals(2 if percent else 0)
        self.amount.setMaximum(100.0 if percent else 1e12)

    def _load_plugin(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load pruning plugin", "", "Python files (*.py)")
        if not path:
            return
        try:
            specs = load_plugin_file(path)
        except SparseGUIError as exc:
            show_error(self, "Cannot load plugin", exc)
            return
        self.refresh_methods(select=specs[0].name)

    def _browse_mask(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Mask file", "", "Masks (*.pt *.pth *.safetensors *.h5 *.hdf5 *.npy *.npz);;All files (*)"
        )
        if path:
            self.mask_path.setText(path)

    # -- building and checking the request ---------------------------------------------------------------------
    def spec(self) -> MethodSpec:
        return resolve_method(str(self.method.currentData()))

    def _selected_tensors(self) -> list[str]:
        return [s.name for s in self.session.selection if s.kind == "tensor"]

    def _pruned_selection(self) -> list[str]:
        return self._selected_tensors() or [f"{s.name}.*" if s.name else "*" for s in self.session.selection
                                            if s.kind == "module"]

    def amount_value(self) -> float | int:
        if self.amount_unit.currentText() == "%":
            return self.amount.value() / 100.0
        return int(self.amount.value())

    def request(self) -> PruneRequest:
        """The request the current settings describe (may be invalid: see :meth:`problem_text`)."""
        spec = self.spec()
        types = [t.strip() for t in self.types.text().split(",") if t.strip()]
        if self.scope_pattern.isChecked():
            targets = [p.strip() for p in self.pattern.text().split(",") if p.strip()]
        else:
            targets = self._selected_tensors()
        n_text = self.n.currentText().strip()
        n: object = n_text
        with contextlib.suppress(ValueError):
            n = float(n_text) if "." in n_text else int(n_text)
        seed = None if self.random_seed.isChecked() else self.seed.value()
        return PruneRequest(
            method=spec.name,
            targets=targets,
            types=types if self.scope_pattern.isChecked() else [],
            amount=self.amount_value() if spec.takes_amount else None,
            n=n if spec.takes_n else None,
            dim=self.dim.value() if spec.takes_dim else None,
            seed=seed if (spec.random or spec.origin != "torch") else None,
            mask=self.mask_path.text().strip() or None if spec.takes_mask else None,
            global_=self.scope_global.isChecked(),
        )

    def problem_text(self) -> str:
        """Why the current settings cannot be applied, or "" if they can."""
        if self.session.busy:
            return "Busy: wait for the running job to finish."
        try:
            spec = self.spec()
            request = self.request()
            if not request.targets:
                return "Select one or more tensors in the module tree, or choose “Tensors matching”."
            if request.global_:
                if spec.name not in GLOBAL_METHODS:
                    return f"Global pruning works with {' or '.join(GLOBAL_METHODS)}, not {spec.name}."
                return ""
            if spec.takes_mask and not request.mask:
                return "Choose a mask file."
            kwargs = ops.prune_settings(spec, request.amount, request.n, request.dim)
            doc = self.session.document
            refs = doc.resolve(request.targets, request.types or None)
            modules = doc.modules()
            for ref in refs:
                self._check_target(modules[ref.module], ref, kwargs)
        except SparseGUIError as exc:
            return str(exc)
        return ""

    def _check_target(self, module: nn.Module, ref: TensorRef, kwargs: dict[str, Any]) -> None:
        """What ``ops.validate_target`` checks, with the unpruned entries read from ``session.stats`` (and counted
        only for an amount given as a count): this runs on every selection change, on tensors of any size."""
        tensor = ops.target_tensor(module, ref.tensor)
        amount = kwargs.get("amount")
        if "dim" in kwargs:
            dim = check_dim(kwargs["dim"], tensor, ref.qualname)
            if amount is not None:
                check_amount_fits(amount, tensor.shape[dim], f"channels along dim {dim} of {ref.qualname}")
        elif isinstance(amount, int):
            if ref.tensor in pruning_hooks(module):
                mask = self.session.stats.tensor(ref.module, ref.tensor + "_mask", module)
                check_amount_fits(amount, mask.numel - mask.zeros, f"unpruned entries of {ref.qualname}")
            else:
                check_amount_fits(amount, tensor.numel(), f"entries of {ref.qualname}")

    def validate(self, *_: object) -> None:
        spec = None
        with contextlib.suppress(SparseGUIError):
            spec = self.spec()
        if spec is not None:
            self.amount.setEnabled(spec.takes_amount or self.scope_global.isChecked())
            self.amount_unit.setEnabled(spec.takes_amount or self.scope_global.isChecked())
            self.n.setEnabled(spec.takes_n)
            self.dim.setEnabled(spec.takes_dim)
            self.seed.setEnabled((spec.random or spec.origin != "torch") and not self.random_seed.isChecked())
            self.random_seed.setEnabled(spec.random or spec.origin != "torch")
            self.mask_path.setEnabled(spec.takes_mask)
            self.mask_browse.setEnabled(spec.takes_mask)
        self.pattern.setEnabled(self.scope_pattern.isChecked())
        self.types.setEnabled(self.scope_pattern.isChecked())
        problem = self.problem_text()
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        self.apply_button.setEnabled(not problem)
        busy = self.session.busy
        self.remove_button.setEnabled(not busy and bool(self.session.selection))
        self.remove_all_button.setEnabled(not busy)

    def _apply(self) -> None:
        if not self.problem_text():
            self.apply_requested.emit(self.request())
