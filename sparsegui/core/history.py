"""Undo and redo: every operation is a command on one stack; the GUI only mirrors it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sparsegui.core.snapshot import Snapshot


class Command:
    """A done operation that can be undone and redone exactly, with its label and recipe step."""

    def __init__(self, label: str, step: dict[str, Any], before: Snapshot, after: Snapshot) -> None:
        self.label = label
        self.step = step
        self._before = before
        self._after = after

    def undo(self, device: torch.device | None = None) -> None:
        self._before.restore(device)

    def redo(self, device: torch.device | None = None) -> None:
        self._after.restore(device)


class History:
    """A stack of done commands with a cursor; ``listeners`` are told after every change."""

    def __init__(self) -> None:
        self._commands: list[Command] = []
        self._index = 0
        self._clean_index: int | None = 0
        self.listeners: list[Callable[[], None]] = []

    def push(self, command: Command) -> None:
        """Record a command that has just been done; anything that could be redone is dropped."""
        del self._commands[self._index :]
        if self._clean_index is not None and self._clean_index > self._index:
            self._clean_index = None
        self._commands.append(command)
        self._index += 1
        self._notify()

    def undo(self, device: torch.device | None = None) -> Command | None:
        if not self.can_undo:
            return None
        self._index -= 1
        command = self._commands[self._index]
        command.undo(device)
        self._notify()
        return command

    def redo(self, device: torch.device | None = None) -> Command | None:
        if not self.can_redo:
            return None
        command = self._commands[self._index]
        command.redo(device)
        self._index += 1
        self._notify()
        return command

    def drop_redo(self) -> None:
        """Forget the commands that could be redone (after a failed replay undid them)."""
        del self._commands[self._index :]
        if self._clean_index is not None and self._clean_index > self._index:
            self._clean_index = None
        self._notify()

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._commands)

    @property
    def undo_label(self) -> str | None:
        return self._commands[self._index - 1].label if self.can_undo else None

    @property
    def redo_label(self) -> str | None:
        return self._commands[self._index].label if self.can_redo else None

    @property
    def index(self) -> int:
        return self._index

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self._commands]

    def done(self) -> list[Command]:
        """The commands currently applied, oldest first (what a recipe records)."""
        return self._commands[: self._index]

    @property
    def modified(self) -> bool:
        return self._clean_index != self._index

    def mark_clean(self) -> None:
        self._clean_index = self._index
        self._notify()

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener()
