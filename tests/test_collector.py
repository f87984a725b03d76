"""The collector policy (sparsegui/collector.py): collections paused while a job builds, survivors frozen after,
collections back on whatever happens. Plain functions: no Qt needed."""

from __future__ import annotations

import gc
import sys

import pytest

from sparsegui import collector


@pytest.fixture(autouse=True)
def restore_gc() -> object:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_quietly_pauses_collections_then_freezes_what_survived() -> None:
    gc.enable()
    gc.unfreeze()
    seen: list[bool] = []

    def build() -> list[object]:
        seen.append(gc.isenabled())
        return [[i] for i in range(1000)]

    before = gc.get_freeze_count()
    kept = collector.quietly(build)
    assert seen == [False] and gc.isenabled()
    assert gc.get_freeze_count() >= before + len(kept)


def test_quietly_turns_collections_back_on_after_an_error() -> None:
    gc.enable()

    def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError):
        collector.quietly(fail)
    assert gc.isenabled()


def test_quietly_importing_only_pauses_for_a_first_import() -> None:
    gc.enable()
    gc.unfreeze()
    assert "sys" in sys.modules
    assert collector.quietly_importing("sys", gc.isenabled) is True
    assert gc.get_freeze_count() == 0
    assert collector.quietly_importing("surely_not_imported_module_xyz", gc.isenabled) is False
    assert gc.get_freeze_count() > 0 and gc.isenabled()
