"""The open document as the widgets see it: one QObject whose signals say what changed.

Widgets read the document's *state* (immutable, :mod:`sparsegui.core.state`) and its structure, never the live
modules: a job computing the next state in a worker changes nothing they read, and a state change happens only
on the UI thread, in :meth:`Session.set_state_changed` after a commit, undo or redo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from sparsegui.core.document import Document
from sparsegui.core.names import split
from sparsegui.core.state import ModelState
from sparsegui.core.stats import Totals, measure, measured


@dataclass(frozen=True)
class Selection:
    """What the user selected: a module (``kind="module"``, ``name`` its qualified name, root ``""``), a tensor the
    forward uses (``"tensor"``, ``name`` like ``"conv1.weight"``), a buffer (``"buffer"``, ``"conv1.weight_mask"``),
    a raw parameter (``"parameter"``, ``"conv1.weight_orig"``) or a hook (``"hook"``, ``name`` = module name,
    ``index`` = position among that module's hooks)."""

    kind: str
    name: str
    index: int = 0

    @property
    def module_name(self) -> str:
        if self.kind in ("module", "hook"):
            return self.name
        return split(self.name)[0]

    @property
    def local_name(self) -> str:
        return split(self.name)[1]


SMALL = 1 << 24
"""A state whose tensors still to count hold at most this many entries in all is counted at once (milliseconds);
anything bigger is counted in the background (``gui/counting.py``)."""


def count_if_small(document: Document, state: ModelState) -> None:
    """Count and measure the tensors of ``state`` not known yet now if that is quick (a few million entries)."""
    todo = [ts for ts in state.tensors.values() if not measured(ts)]
    if todo and sum(ts.numel for ts in todo) <= SMALL:
        for ts in todo:
            measure(ts)


class Session(QObject):
    """Holds the current :class:`Document`; every widget listens here instead of to each other.

    ``document_replaced`` — a new model was opened (rebuild everything);
    ``model_changed`` — the state changed (an operation, undo, redo or device move); ``changed`` then names the
    tensors whose state differs (None: anything may have changed) so listeners redo only what concerns them;
    ``counts_changed`` — zero counts were made in the background (numbers may now show where "…" was);
    ``selection_changed`` — the list of selected items changed (the first is the "current" one);
    ``busy_changed`` — a long job started (True) or ended (False).
    """

    document_replaced = Signal(object)
    model_changed = Signal()
    counts_changed = Signal()
    selection_changed = Signal(list)
    busy_changed = Signal(bool)

    def __init__(self, document: Document | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._document = document or Document.demo("lenet")
        self._selection: list[Selection] = []
        self._busy = False
        self._shown: ModelState = self._document.state  # the state the last model_changed announced
        self._totals: Totals | None = None
        self.changed: list[str] | None = None

    @property
    def document(self) -> Document:
        return self._document

    @property
    def state(self) -> ModelState:
        """The document's current state (it changes only on the UI thread)."""
        return self._document.state

    @property
    def totals(self) -> Totals:
        """Counts of the current state (a small model's uncounted tensors are counted on first use)."""
        state = self._document.state
        if self._totals is None or self._totals.state is not state:
            count_if_small(self._document, state)
            self._totals = Totals(self._document.structure, state)
        return self._totals

    def replace_document(self, document: Document) -> None:
        self._document = document
        self._selection = []
        self._shown = document.state
        self._totals = None
        self.changed = None
        self.document_replaced.emit(document)
        self.selection_changed.emit([])

    def state_changed(self) -> None:
        """The document's state changed (on the UI thread): tell everyone which tensors differ."""
        previous, current = self._shown, self._document.state
        self.changed = current.changed_since(previous) if previous is not current else []
        self._shown = current
        self.model_changed.emit()

    def moved(self) -> None:
        """The tensors moved to another device (their values did not change)."""
        self.changed = []
        self.model_changed.emit()

    def counts_arrived(self) -> None:
        self._totals = Totals(self._document.structure, self._document.state)
        self.counts_changed.emit()

    def is_touched(self, qualname: str) -> bool:
        """Whether the last ``model_changed`` may have changed tensor ``qualname`` (or its ``_orig``/``_mask``)."""
        if self.changed is None:
            return True
        structure = self._document.structure
        module = split(qualname)[0]
        return any(structure.tensors[name].module == module or
                   any(split(a)[0] == module for a in structure.tensors[name].aliases) for name in self.changed)

    @property
    def selection(self) -> list[Selection]:
        return list(self._selection)

    def select(self, items: Sequence[Selection]) -> None:
        if list(items) != self._selection:
            self._selection = list(items)
            self.selection_changed.emit(list(items))

    @property
    def busy(self) -> bool:
        return self._busy

    def set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)
