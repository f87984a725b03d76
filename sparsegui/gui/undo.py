"""A thin ``QUndoCommand`` mirror of the core history: the Edit menu, labels and the history view."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtGui import QUndoCommand, QUndoStack

from sparsegui.core.history import Command
from sparsegui.gui.session import Session


class CoreCommand(QUndoCommand):
    """Mirrors one core :class:`Command`; the core already did it, so the first ``redo`` (from push) is a no-op."""

    def __init__(self, session: Session, command: Command) -> None:
        super().__init__(command.label)
        self._session = session
        self._touched = touched_by([command])
        self._pushed = False

    def redo(self) -> None:
        if not self._pushed:
            self._pushed = True
            return
        self._session.document.redo()
        self._session.notify_changed(self._touched)

    def undo(self) -> None:
        self._session.document.undo()
        self._session.notify_changed(self._touched)


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


def push_commands(stack: QUndoStack, session: Session, commands: list[Command]) -> None:
    """Mirror commands the core has just done (several for a recipe, grouped as one macro)."""
    if len(commands) == 1:
        stack.push(CoreCommand(session, commands[0]))
        return
    stack.beginMacro(f"recipe ({len(commands)} steps)")
    for command in commands:
        stack.push(CoreCommand(session, command))
    stack.endMacro()
