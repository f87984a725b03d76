"""Undo and redo: the model states before and after each operation, on one stack; the GUI only shows it.

States are immutable and share everything an operation did not touch, so a step of history costs the masks it
made (1 bit per entry). The history still has a memory budget: when the masks that only older states hold exceed
it, the oldest steps stop being undoable (they stay in the recipe: they were done) and :attr:`History.dropped`
says how many.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sparsegui.core.state import Baked, ModelState, Values
from sparsegui.core.steps import Step


def default_budget() -> int:
    """Bytes of masks the history may keep: a quarter of the machine's memory, between 256 MiB and 4 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return max(256 << 20, min(total // 4, 4 << 30))


class Command:
    """A done operation — one step, or several undone together (a recipe applied in the app) — with its recipe
    steps, label, the tensors it touched and the states before and after it."""

    def __init__(self, steps: Sequence[Step], before: ModelState, after: ModelState, touched: Iterable[str],
                 label: str | None = None) -> None:
        self.ops = list(steps)
        self.steps: list[dict[str, Any]] = [step.to_json() for step in steps]
        self.step: dict[str, Any] = self.steps[-1]
        """The (last) recipe step."""
        self.label = label or steps[-1].label()
        self.before = before
        self.after = after
        self.touched = list(dict.fromkeys(touched))


def _value_masks(values: Values, out: dict[int, int]) -> None:
    while isinstance(values, Baked):
        out[id(values.mask)] = values.mask.nbytes
        values = values.before


def mask_bytes(states: Iterable[ModelState]) -> int:
    """Bytes of the distinct masks the states hold (shared masks counted once)."""
    seen: dict[int, int] = {}
    for state in states:
        for ts in state.tensors.values():
            if ts.pruning is not None:
                seen[id(ts.pruning.mask)] = ts.pruning.mask.nbytes
            _value_masks(ts.values, seen)
    return sum(seen.values())


class History:
    """Done commands with a cursor; ``listeners`` are told after every change."""

    def __init__(self, initial: ModelState, budget: int | None = None) -> None:
        self._initial = initial
        self._commands: list[Command] = []
        self._index = 0
        self._clean_index: int | None = 0
        self.budget = default_budget() if budget is None else budget
        self.dropped = 0
        """How many of the oldest steps can no longer be undone (the budget)."""
        self.dropped_steps: list[dict[str, Any]] = []
        self.listeners: list[Callable[[], None]] = []

    @property
    def state(self) -> ModelState:
        """The current state."""
        return self._commands[self._index - 1].after if self._index else self._initial

    def push(self, command: Command) -> None:
        """Record a command that has just been done; anything that could be redone is dropped."""
        del self._commands[self._index :]
        if self._clean_index is not None and self._clean_index > self._index:
            self._clean_index = None
        self._commands.append(command)
        self._index += 1
        self._keep_within_budget()
        self._notify()

    def _keep_within_budget(self) -> None:
        while self._index > 1 and mask_bytes(self._states()) > self.budget:
            oldest = self._commands.pop(0)
            self._initial = oldest.after
            self._index -= 1
            self.dropped += 1
            self.dropped_steps.extend(oldest.steps)
            if self._clean_index is not None:
                self._clean_index = self._clean_index - 1 if self._clean_index > 0 else None

    def _states(self) -> list[ModelState]:
        return [self._initial, *(c.after for c in self._commands)]

    def undo(self) -> Command | None:
        if not self.can_undo:
            return None
        self._index -= 1
        command = self._commands[self._index]
        self._notify()
        return command

    def redo(self) -> Command | None:
        if not self.can_redo:
            return None
        command = self._commands[self._index]
        self._index += 1
        self._notify()
        return command

    def go_to(self, index: int) -> list[Command]:
        """Undo or redo until ``index`` commands are done; returns the commands passed."""
        passed = []
        while self._index > index and self.can_undo:
            passed.append(self._commands[self._index - 1])
            self._index -= 1
        while self._index < index and self.can_redo:
            passed.append(self._commands[self._index])
            self._index += 1
        if passed:
            self._notify()
        return passed

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
        """The undoable commands currently applied, oldest first."""
        return self._commands[: self._index]

    def steps(self) -> list[dict[str, Any]]:
        """Every step applied since the model was opened (those past the budget too): what a recipe records."""
        return [*self.dropped_steps, *(step for c in self.done() for step in c.steps)]

    @property
    def modified(self) -> bool:
        return self._clean_index != self._index

    def mark_clean(self) -> None:
        self._clean_index = self._index
        self._notify()

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener()
