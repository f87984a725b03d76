"""The open document as the widgets see it: one QObject whose signals say what changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from sparsegui.core.document import Document
from sparsegui.core.stats import Count, Key, SparsityStats


@dataclass(frozen=True)
class Selection:
    """What the user selected: a module (``kind="module"``, ``name`` its qualified name, root ``""``), a tensor the
    forward uses (``"tensor"``, ``name`` like ``"conv1.weight"``), a buffer (``"buffer"``, ``"conv1.weight_mask"``),
    a raw parameter (``"parameter"``, ``"conv1.weight_orig"``) or a hook (``"hook"``, ``name`` = module name,
    ``index`` = position among that module's hooks as listed by ``inspection.module_hooks``)."""

    kind: str
    name: str
    index: int = 0

    @property
    def module_name(self) -> str:
        if self.kind in ("module", "hook"):
            return self.name
        return self.name.rpartition(".")[0]

    @property
    def local_name(self) -> str:
        return self.name.rpartition(".")[2]


class Session(QObject):
    """Holds the current :class:`Document`; every widget listens here instead of to each other.

    ``document_replaced`` — a new model was opened (rebuild everything);
    ``model_changed`` — the same model changed (an operation, undo, redo or device move): refresh statistics;
    ``changed`` then names the tensors it touched (None: anything may have changed), and ``stats`` has already
    forgotten their counts, so listeners redo only what concerns those tensors;
    ``selection_changed`` — the list of selected items changed (the first is the "current" one);
    ``busy_changed`` — a long job started (True) or ended (False): disable conflicting actions.
    """

    document_replaced = Signal(object)
    model_changed = Signal()
    selection_changed = Signal(list)
    busy_changed = Signal(bool)

    def __init__(self, document: Document | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._document = document or Document.demo("lenet")
        self._selection: list[Selection] = []
        self._busy = False
        self.stats = SparsityStats(self._document.model)
        self.changed: list[str] | None = None

    @property
    def document(self) -> Document:
        return self._document

    def replace_document(self, document: Document, counts: Mapping[Key, Count] | None = None) -> None:
        """Show ``document``; ``counts`` of its tensors made off the UI thread save counting them here."""
        self._document = document
        self._selection = []
        self.stats = SparsityStats(document.model)
        self.stats.store(counts or {})
        self.changed = None
        self.document_replaced.emit(document)
        self.selection_changed.emit([])

    def notify_changed(self, touched: Sequence[str] | None = None, counts: Mapping[Key, Count] | None = None) -> None:
        """Tell everyone the model changed: only tensors ``touched`` (qualified names; None: anything may have), whose
        fresh ``counts`` a worker may already have made."""
        self.changed = None if touched is None else list(touched)
        self.stats.invalidate(self.changed)
        if counts:
            self.stats.store(counts)
        self.model_changed.emit()

    def is_touched(self, qualname: str) -> bool:
        """Whether the last ``model_changed`` may have changed tensor ``qualname`` (or its ``_orig``/``_mask``)."""
        if self.changed is None:
            return True
        module = qualname.rpartition(".")[0]
        return any(name.rpartition(".")[0] == module for name in self.changed)

    @property
    def selection(self) -> list[Selection]:
        return list(self._selection)

    def select(self, items: list[Selection]) -> None:
        if items != self._selection:
            self._selection = list(items)
            self.selection_changed.emit(list(items))

    @property
    def busy(self) -> bool:
        return self._busy

    def set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)
