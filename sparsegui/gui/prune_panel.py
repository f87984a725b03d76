"""The prune panel: method, amount, n/dim, seed and scope; invalid settings are explained in place."""

from __future__ import annotations

import contextlib

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

from sparsegui.core.axes import dim_meaning
from sparsegui.core.errors import SparseGUIError
from sparsegui.core.methods import MethodSpec, available_methods, broken_plugins, load_plugin_file, resolve_method
from sparsegui.core.operations import check_step
from sparsegui.core.steps import GlobalStep, PruneStep, Step
from sparsegui.core.targets import resolve_targets
from sparsegui.gui.errors import show_error
from sparsegui.gui.session import Session

N_CHOICES = ["1", "2", "inf", "-inf", "fro", "nuc"]
NM_NOTE = ("Keeps the {keep} largest |w| of every {group} consecutive entries along each weight's input axis "
           "(Linear: dim 1, Conv1D: dim 0). The mask alone makes nothing faster or smaller: only sparse kernels "
           "use it (Details shows which ones a weight is eligible for).")


def _pair(main: QWidget, side: QWidget) -> QHBoxLayout:
    """A form row: ``main`` takes the width, ``side`` sits at its right."""
    row = QHBoxLayout()
    row.addWidget(main, 1)
    row.addWidget(side)
    return row


class PrunePanel(QWidget):
    """Collects a :class:`~sparsegui.core.steps.Step`; ``apply_requested`` fires only for settings the core
    accepts."""

    apply_requested = Signal(object)
    remove_requested = Signal(list)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("prunePanel")
        self.session = session
        self.method = QComboBox(objectName="methodCombo")
        self.load_plugin = QPushButton("Load plugin…", objectName="loadPluginButton")
        # the maximum is not 100: typing 150 must be explained (problem_text), not silently cut to 15
        self.amount = QDoubleSpinBox(objectName="amountSpin", decimals=2, maximum=1e12, value=30.0)
        self.amount_unit = QComboBox(objectName="amountUnit")
        self.amount_unit.addItems(["%", "entries"])
        self.n = QComboBox(objectName="nCombo", editable=True)
        self.n.addItems(N_CHOICES)
        self.n.setCurrentText("2")
        self.dim = QSpinBox(objectName="dimSpin", minimum=-8, maximum=8, value=0)
        self.dim_meaning = QLabel(objectName="dimMeaningLabel", wordWrap=True)
        self.dim_meaning.setStyleSheet("color: palette(placeholder-text);")
        self.keep = QSpinBox(objectName="keepSpin", minimum=1, maximum=63, value=2)
        self.group = QSpinBox(objectName="groupSpin", minimum=2, maximum=64, value=4, prefix="of every ")
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
        self.plugin_problem = QLabel(objectName="pluginProblemLabel", wordWrap=True)
        self.plugin_problem.setStyleSheet("color: #d35400;")
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
        form.addRow("", self.dim_meaning)
        form.addRow("Keep", _pair(self.keep, self.group))
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
        root.addWidget(self.plugin_problem)
        root.addWidget(self.problem)
        root.addLayout(buttons)
        root.addStretch(1)

    def _connect(self) -> None:
        for signal in (self.method.currentIndexChanged, self.amount.valueChanged, self.amount_unit.currentIndexChanged,
                       self.n.currentTextChanged, self.dim.valueChanged, self.random_seed.toggled,
                       self.keep.valueChanged, self.group.valueChanged,
                       self.mask_path.textChanged, self.pattern.textChanged, self.types.textChanged,
                       self.scope_group.buttonToggled):
            signal.connect(self.validate)
        self.session.selection_changed.connect(self.validate)
        self.session.counts_changed.connect(self.validate)
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
        broken = broken_plugins()
        self.plugin_problem.setText("; ".join(f"Installed plugin {name} cannot be loaded ({why})"
                                              for name, why in broken.items()))
        self.plugin_problem.setVisible(bool(broken))
        self.validate()

    def _unit_changed(self) -> None:
        percent = self.amount_unit.currentText() == "%"
        self.amount.setDecimals(2 if percent else 0)

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

    def request(self) -> Step:
        """The step the current settings describe (may be invalid: see :meth:`problem_text`)."""
        spec = self.spec()
        types = tuple(t.strip() for t in self.types.text().split(",") if t.strip())
        if self.scope_pattern.isChecked():
            targets = tuple(p.strip() for p in self.pattern.text().split(",") if p.strip())
        else:
            targets = tuple(self._selected_tensors())
            types = ()
        seed = None if self.random_seed.isChecked() else self.seed.value()
        if self.scope_global.isChecked():
            return GlobalStep(spec.name, targets, self.amount_value(), types,
                              seed if spec.name == "random_unstructured" else None)
        n_text = self.n.currentText().strip()
        n: object = n_text
        with contextlib.suppress(ValueError):
            n = float(n_text) if "." in n_text else int(n_text)
        return PruneStep(
            method=spec.name,
            targets=targets,
            types=types,
            amount=self.amount_value() if spec.takes_amount else None,
            n=n if spec.takes_n else None,  # type: ignore[arg-type]
            dim=self.dim.value() if spec.takes_dim else None,
            seed=seed if spec.seeded else None,
            mask=self.mask_path.text().strip() or None if spec.takes_mask else None,
            keep=self.keep.value() if spec.takes_nm else None,
            group=self.group.value() if spec.takes_nm else None,
        )

    def dim_text(self) -> str:
        """What pruning along ``dim`` removes from the chosen tensors (``dim 0 of c_attn.weight = input
        features``), from the axes the model's classes (or conventions) give; empty when nothing is chosen."""
        structure, state = self.session.document.structure, self.session.state
        try:
            names = resolve_targets(structure, state, list(self.request().targets) or ["-"], None)
        except SparseGUIError:
            return ""
        dim = self.dim.value()
        said: dict[str, list[str]] = {}
        for name in names:
            meaning = dim_meaning(structure.tensors[name].axes, dim) or "an axis whose role is not known"
            said.setdefault(meaning, []).append(name.rpartition(".")[2] if len(names) > 3 else name)
        lines = [f"dim {dim} of {', '.join(dict.fromkeys(who[:3]))}{'…' if len(who) > 3 else ''} = {meaning}"
                 for meaning, who in said.items()]
        return "\n".join(lines[:3])

    def problem_text(self) -> str:
        """Why the current settings cannot be applied, or "" if they can (the core's own check of the step)."""
        if self.session.busy:
            return "Busy: wait for the running job to finish."
        percent = self.amount_unit.currentText() == "%"
        if percent and self.amount.value() > 100:
            return f"Amount {self.amount.value():g}% is more than 100%: a percentage is between 0 and 100."
        try:
            step = self.request()
            if not step.targets:
                return "Select one or more tensors in the module tree, or choose “Tensors matching”."
            if isinstance(step, PruneStep) and self.spec().takes_mask and not step.mask:
                return "Choose a mask file."
            check_step(self.session.document.structure, self.session.state, step)
        except SparseGUIError as exc:
            return str(exc)
        return ""

    def validate(self, *_: object) -> None:
        spec = None
        with contextlib.suppress(SparseGUIError):
            spec = self.spec()
        if spec is not None:
            self.amount.setEnabled(spec.takes_amount or self.scope_global.isChecked())
            self.amount_unit.setEnabled(spec.takes_amount or self.scope_global.isChecked())
            self.n.setEnabled(spec.takes_n)
            self.dim.setEnabled(spec.takes_dim)
            self.keep.setEnabled(spec.takes_nm)
            self.group.setEnabled(spec.takes_nm)
            self.seed.setEnabled(spec.seeded and not self.random_seed.isChecked())
            self.random_seed.setEnabled(spec.seeded)
            self.mask_path.setEnabled(spec.takes_mask)
            self.mask_browse.setEnabled(spec.takes_mask)
        self.pattern.setEnabled(self.scope_pattern.isChecked())
        self.types.setEnabled(self.scope_pattern.isChecked())
        self.dim_meaning.setText(self.dim_text() if spec is not None and spec.takes_dim else
                                 NM_NOTE.format(keep=self.keep.value(), group=self.group.value())
                                 if spec is not None and spec.takes_nm else "")
        self.dim_meaning.setVisible(bool(self.dim_meaning.text()))
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
