"""A broken installed plugin is not swallowed: the others work, and it is named with its error (log, CLI, panel)."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint

import pytest

from sparsegui.core import methods
from tests.test_cli import cli


@pytest.fixture
def broken(monkeypatch: pytest.MonkeyPatch) -> None:
    real = methods.entry_points

    def with_a_broken_one(*, group: str) -> list[EntryPoint]:
        return [*real(group=group), EntryPoint("ghost", "no_such_package.plugin:Ghost", group)]

    monkeypatch.setattr(methods, "entry_points", with_a_broken_one)
    monkeypatch.setattr(methods, "_broken", {})


@pytest.mark.usefixtures("broken")
def test_the_others_still_load_and_the_broken_one_is_named(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sparsegui.core.methods"):
        found = methods.available_methods()
    assert "foobar" in found and "ghost" not in found
    assert "ModuleNotFoundError" in methods.broken_plugins()["ghost"]
    assert any("ghost" in r.getMessage() and "no_such_package" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("broken")
def test_methods_command_warns(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "methods")
    assert result.code == 0 and "foobar" in result.out
    assert "warning: installed plugin ghost cannot be loaded (ModuleNotFoundError" in result.err


@pytest.mark.usefixtures("broken")
def test_the_prune_panel_says_so(qtbot) -> None:  # type: ignore[no-untyped-def]
    from sparsegui.gui.prune_panel import PrunePanel
    from sparsegui.gui.session import Session

    panel = PrunePanel(Session())
    qtbot.addWidget(panel)
    assert "Installed plugin ghost cannot be loaded" in panel.plugin_problem.text()
