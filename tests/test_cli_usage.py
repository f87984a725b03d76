"""Usage errors of the command line: wrong-typed, empty or contradictory options give one ``error:`` line and exit
status 2 (never exit 1 with ``unexpected …``), and nothing is written."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sparsegui.core.demos import build_demo
from tests.test_cli import assert_one_line_error, cli

RECIPE = {"steps": [{"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight"], "amount": 0.5}]}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    torch.save(build_demo("lenet").state_dict(), tmp_path / "model.pt")
    (tmp_path / "recipe.json").write_text(json.dumps(RECIPE), encoding="utf-8")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "taken.pt").mkdir()
    return tmp_path


DEEP = "[" * 20_000 + "]" * 20_000
HUGE_INT = '{"width": ' + "9" * 5000 + "}"

# (arguments after the subcommand, given the folder; words the error must carry)
APPLY: dict[str, tuple[Callable[[Path], list[object]], str]] = {
    "empty-output": (lambda d: [d / "recipe.json", "--demo", "lenet", "-o", ""], "-o/--output is empty"),
    "empty-masks-out": (lambda d: [d / "recipe.json", "--demo", "lenet", "-o", d / "o.pt", "--masks-out", ""],
                        "--masks-out is empty"),
    "empty-recipe": (lambda d: ["", "--demo", "lenet", "-o", d / "o.pt"], "RECIPE is empty"),
    "empty-demo": (lambda d: [d / "recipe.json", "--demo", "", "-o", d / "o.pt"], "--demo is empty"),
    "empty-arch": (lambda d: [d / "recipe.json", d / "model.pt", "--arch", "", "-o", d / "o.pt"], "--arch is empty"),
    "empty-arch-path": (lambda d: [d / "recipe.json", d / "model.pt", "--arch", "sparsegui.core.demos:lenet",
                                   "--arch-path", "", "-o", d / "o.pt"], "--arch-path is empty"),
    "arch-kwargs-without-arch": (lambda d: [d / "recipe.json", d / "model.pt", "--arch-kwargs", "{}", "-o",
                                            d / "o.pt"], "--arch-kwargs needs --arch"),
    "arch-path-without-arch": (lambda d: [d / "recipe.json", d / "model.pt", "--arch-path", d / "plugins", "-o",
                                          d / "o.pt"], "--arch-path needs --arch"),
    "arch-kwargs-deep": (lambda d: [d / "recipe.json", d / "model.pt", "--arch", "sparsegui.core.demos:lenet",
                                    "--arch-kwargs", DEEP, "-o", d / "o.pt"], "nested too deeply"),
    "arch-kwargs-huge-int": (lambda d: [d / "recipe.json", d / "model.pt", "--arch", "sparsegui.core.demos:lenet",
                                        "--arch-kwargs", HUGE_INT, "-o", d / "o.pt"], "--arch-kwargs"),
    "arch-kwargs-list": (lambda d: [d / "recipe.json", d / "model.pt", "--arch", "sparsegui.core.demos:lenet",
                                    "--arch-kwargs", "[1]", "-o", d / "o.pt"], "JSON object"),
    "output-is-a-folder": (lambda d: [d / "recipe.json", "--demo", "lenet", "-o", d / "taken.pt"], "folder"),
    "output-under-a-file": (lambda d: [d / "recipe.json", "--demo", "lenet", "-o", d / "model.pt" / "x.pt"],
                            "model.pt"),
    "masks-out-is-output": (lambda d: [d / "recipe.json", "--demo", "lenet", "-o", d / "o.pt", "--masks-out",
                                       d / "o.pt"], "other output"),
    "recipe-is-a-folder": (lambda d: [d / "plugins", "--demo", "lenet", "-o", d / "o.pt"], "folder"),
    "device-typo": (lambda d: [d / "recipe.json", "--demo", "lenet", "-o", d / "o.pt", "--device", "gpu"], "gpu"),
    "device-empty": (lambda d: [d / "recipe.json", "--demo", "lenet", "-o", d / "o.pt", "--device", ""], "device"),
    "missing-option-value": (lambda d: [d / "recipe.json", "--demo", "lenet", "-o"], "-o"),
    "two-models": (lambda d: [d / "recipe.json", d / "model.pt", d / "model.pt", "-o", d / "o.pt"], "model.pt"),
}


@pytest.mark.parametrize("case", list(APPLY))
def test_apply_usage_errors(capsys: pytest.CaptureFixture[str], folder: Path, case: str) -> None:
    make, words = APPLY[case]
    before = sorted(p.name for p in folder.rglob("*"))
    result = cli(capsys, "apply", *make(folder))
    assert_one_line_error(result, words)
    assert "unexpected" not in result.err
    assert sorted(p.name for p in folder.rglob("*")) == before


INSPECT: dict[str, tuple[Callable[[Path], list[object]], str]] = {
    "arch-kwargs-without-arch": (lambda d: [d / "model.pt", "--arch-kwargs", '{"a": 1}'], "--arch-kwargs needs"),
    "arch-path-without-arch": (lambda d: [d / "model.pt", "--arch-path", d], "--arch-path needs"),
    "empty-demo": (lambda d: ["--demo", ""], "--demo is empty"),
    "arch-kwargs-deep": (lambda d: [d / "model.pt", "--arch", "sparsegui.core.demos:lenet", "--arch-kwargs", DEEP],
                         "nested too deeply"),
    "demo-and-arch-kwargs": (lambda d: ["--demo", "lenet", "--arch-kwargs", "{}"], "--arch"),
}


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["table", "json"])
@pytest.mark.parametrize("case", list(INSPECT))
def test_inspect_usage_errors(capsys: pytest.CaptureFixture[str], folder: Path, case: str,
                              json_flag: list[str]) -> None:
    make, words = INSPECT[case]
    result = cli(capsys, "inspect", *make(folder), *json_flag)
    assert_one_line_error(result, words)
    assert "unexpected" not in result.err


def test_app_arguments_are_checked_too(capsys: pytest.CaptureFixture[str], folder: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """'sparsegui PATH …' (the app) refuses the same contradictions before opening anything."""
    monkeypatch.setitem(sys.modules, "sparsegui.gui.app", None)
    assert_one_line_error(cli(capsys, folder / "model.pt", "--arch-kwargs", "{}"), "--arch-kwargs needs --arch")
    assert_one_line_error(cli(capsys, "--demo", ""), "--demo is empty")


def test_valid_arch_options_still_work(capsys: pytest.CaptureFixture[str], folder: Path) -> None:
    """--arch with --arch-kwargs and --arch-path together is accepted."""
    result = cli(capsys, "inspect", folder / "model.pt", "--arch", "sparsegui.core.demos:lenet", "--arch-kwargs",
                 "{}", "--arch-path", folder / "plugins", "--json")
    assert result.code == 0, result.err
