"""In the app, recipes and autosaves are data too: code they name runs only after a dialog that lists it, and a
damaged or hostile autosave never stops the app from starting (it is moved aside and reported once)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from sparsegui.gui.app import start
from sparsegui.gui.autosave import offer_restore, pending

PLANTED = """
from pathlib import Path
Path({marker!r}).write_text("ran")
from torch import nn
from torch.nn.utils import prune


class Evil(prune.BasePruningMethod):
    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t, default_mask):
        mask = default_mask.clone()
        mask.view(-1)[0] = 0
        return mask


def factory():
    return nn.Linear(3, 2)
"""


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> tuple[str, Path]:
    """A module on the import path that writes a marker when imported (a fresh name per test)."""
    name = f"planted_{request.node.name.split('[')[0][5:25]}_{id(request) % 10**6}"
    marker = tmp_path / "ran.txt"
    (tmp_path / f"{name}.py").write_text(PLANTED.format(marker=str(marker)), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, marker


def answer(monkeypatch: pytest.MonkeyPatch, method: str, button: QMessageBox.StandardButton) -> list[str]:
    asked: list[str] = []

    def reply(_parent, _title, text, *_a, **_k):  # type: ignore[no-untyped-def]
        asked.append(text)
        return button

    monkeypatch.setattr(QMessageBox, method, reply)
    return asked


@pytest.mark.parametrize("agree", [False, True])
def test_apply_recipe_lists_the_code_and_runs_it_only_if_agreed(window, qtbot, tmp_path, monkeypatch, planted,  # type: ignore[no-untyped-def]
                                                                 agree) -> None:
    name, marker = planted
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"steps": [{"op": "prune", "method": f"{name}:Evil", "targets": ["fc1.weight"]}]}))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(recipe), ""))
    button = QMessageBox.StandardButton.Yes if agree else QMessageBox.StandardButton.Cancel
    asked = answer(monkeypatch, "warning", button)
    window.recipe_action.trigger()
    assert len(asked) == 1 and f"import the Python module {name}" in asked[0]
    if agree:
        qtbot.waitUntil(lambda: not window.session.busy and window.session.document.history.index == 1, timeout=20000)
        assert marker.exists()
    else:
        assert not window.session.busy and window.session.document.history.index == 0
        assert not marker.exists()


def test_restoring_an_autosave_that_names_an_architecture_asks_first(window, monkeypatch, planted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, marker = planted
    source = tmp_path / "w.pt"
    import torch

    torch.save({"weight": torch.ones(2, 3), "bias": torch.zeros(2)}, source)
    data = {"source": {"path": str(source), "arch": f"{name}:factory"},
            "recipe": {"steps": [{"op": "prune", "method": f"{name}:Evil", "targets": ["weight"]}]}}
    asked = answer(monkeypatch, "question", QMessageBox.StandardButton.No)
    assert not offer_restore(window, window.controller, data)
    assert len(asked) == 1
    assert f"import the architecture {name}:factory" in asked[0] and f"import the Python module {name}" in asked[0]
    assert not marker.exists() and not window.session.busy


HOSTILE = [
    ("not json", b"{not json"),
    ("deep", b"[" * 100000 + b"]" * 100000),
    ("wrong types", json.dumps({"source": {"path": 3}, "recipe": {"steps": []}}).encode()),
    ("no model", json.dumps({"source": {}, "recipe": {"steps": [{"op": "remove", "targets": ["*"]}]}}).encode()),
    ("bad step", json.dumps({"source": {"demo": "lenet"}, "recipe": {"steps": [{"op": "explode"}]}}).encode()),
    ("binary", bytes(range(256)) * 10),
    ("huge", b" " * (17 << 20)),
]


@pytest.mark.parametrize(("kind", "content"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_bad_autosave_never_stops_the_start(qtbot, isolated_settings, tmp_path, monkeypatch,  # type: ignore[no-untyped-def]
                                              kind: str, content: bytes) -> None:
    """The window opens on the demo; the problem is shown once; the file is moved aside, so the next start is
    clean."""
    path = tmp_path / "autosave.json"
    path.write_bytes(content)
    warned = answer(monkeypatch, "warning", QMessageBox.StandardButton.Ok)
    offered = answer(monkeypatch, "question", QMessageBox.StandardButton.Yes)
    args = argparse.Namespace(demo=None, path=None, key=None, arch=None, arch_kwargs=None, arch_path=None,
                              trust=False)
    window, saver = start(args, path)
    qtbot.addWidget(window)
    assert window.isVisible() and window.session.document.source.demo == "lenet"
    assert len(warned) == 1 and "could not be used" in warned[0] and offered == []
    assert not path.exists() and any(p.name.startswith("autosave.json.bad-") for p in tmp_path.iterdir())
    assert pending(path).problem is None and pending(path).data is None
    saver.discard()


def test_a_rewritten_source_is_said_at_once(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The window watches the files the model came from: a rewrite is said once (the model shown is still the one
    read, since a small file is read into memory)."""
    import torch

    from sparsegui.core.document import Document

    path = tmp_path / "m.pt"
    Document.demo("lenet").export(path)
    window.controller.open_path(str(path))
    qtbot.waitUntil(lambda: not window.session.busy and window.session.document.source.path == str(path),
                    timeout=20000)
    told = answer(monkeypatch, "information", QMessageBox.StandardButton.Ok)
    torch.save({"x": torch.ones(3)}, path)
    qtbot.waitUntil(lambda: bool(told), timeout=10000)
    assert "written to by another program" in told[0]
    torch.save({"x": torch.ones(4)}, path)
    qtbot.wait(300)
    assert len(told) == 1
