"""A thin ``QUndoCommand`` mirror of the core history: the Edit menu, labels and the history view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtGui import QUndoCommand, QUndoStack

from sparsegui.core.history import Command
from sparsegui.core.stats import Count, Key
from sparsegui.gui.session import Session


class CoreCommand(QUndoCommand):
    """Mirrors one core :class:`Command`; the core already did it, so the first ``redo`` (from push) is a no-op."""

    def __init__(self, session: Session, command: Command, before: Mapping[Key, Count] | None = None,
                 after: Mapping[Key, Count] | None = None) -> None:
        super().__init__(command.label)
        self._session = session
        self._touched = touched_by([command])
        self._before, self._after = dict(before or {}), dict(after or {})  # counts of the touched modules
        self._pushed = False

    def redo(self) -> None:
        if not self._pushed:
            self._pushed = True
            return
        self._session.document.redo()
        self._session.notify_changed(self._touched, self._after)

    def undo(self) -> None:
        self._session.document.undo()
        self._session.notify_changed(self._touched, self._before)


def touched_by(commands: Sequence[Command]) -> list[str] | None:
    """The tensors ``commands`` changed (their recipe steps' ``targets``); None if one of them does not say."""
    touched: dict[str, None] = {}
    for command in commands:
        targets = command.step.get("targets")
        if not isinstance(targets, list):
            return None
        touched.update(dict.fromkeys(str(t) for t in targets))
    return list(touched)


def make_undo_stack(session: Session) -> QUndoStack:
    stack = QUndoStack()
    stack.setObjectName("undoStack")
    session.document_replaced.connect(lambda _doc: stack.clear())
    return stack


def push_commands(stack: QUndoStack, session: Session, commands: list[Command],
                  after: Mapping[Key, Count] | None = None) -> None:
    """Mirror commands the core has just done (several for a recipe, grouped as one macro). Call it before
    ``session.notify_changed``: a single command keeps the counts ``session.stats`` holds for its modules, and
    ``after`` them, so undo and redo need not count again."""
    if len(commands) == 1:
        touched = touched_by(commands)
        before = session.stats.known(touched) if touched is not None else None
        stack.push(CoreCommand(session, commands[0], before, after))
        return
    stack.beginMacro(f"recipe ({len(commands)} steps)")
    for command in commands:
        stack.push(CoreCommand(session, command))
    stack.endMacro()
