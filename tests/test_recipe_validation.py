"""Recipes are validated as data (sparsegui/core/recipe.py): every wrong JSON type, every budget, every file that is
not a regular file gives one line naming the field (exit status 2 from the CLI), and never a hang or ``unexpected``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sparsegui.core.errors import RecipeError
from sparsegui.core.recipe_checks import (
    MAX_RECIPE_BYTES,
    MAX_RECIPE_DEPTH,
    MAX_RECIPE_STEPS,
    MAX_SEED,
    load_recipe,
    validate_recipe,
)
from tests.test_cli import assert_one_line_error, cli

ROOT = Path(__file__).resolve().parents[1]
PRUNE = {"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight"], "amount": 0.5}
LN = {"op": "prune", "method": "ln_structured", "targets": ["fc1.weight"], "amount": 0.5, "n": 2, "dim": 0}
GLOBAL = {"op": "global", "method": "l1_unstructured", "targets": ["fc*.weight"], "amount": 0.2}
NAN = float("nan")


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _wrong(field: str, base: dict[str, Any], values: list[Any]) -> list[Any]:
    return [pytest.param({"steps": [PRUNE, {**base, field: v}]}, f"step 2: '{field}'",
                         id=f"{field}={type(v).__name__}:{str(v)[:12]}") for v in values]


BAD: list[Any] = [
    *[pytest.param(r, "JSON object", id=f"top-{type(r).__name__}") for r in ([PRUNE], "steps", 3, None, True)],
    *[pytest.param({"steps": s}, "'steps'", id=f"steps-{type(s).__name__}") for s in ({"op": "prune"}, "x", 1, None)],
    pytest.param({}, "'steps'", id="steps-missing"),
    pytest.param({"steps": [], "format": "other"}, "'format'", id="format"),
    pytest.param({"steps": [], "format": ["sparsegui-recipe"]}, "'format'", id="format-list"),
    pytest.param({"steps": [], "version": "1"}, "'version'", id="version-string"),
    pytest.param({"steps": [], "version": True}, "'version'", id="version-bool"),
    pytest.param({"steps": [], "version": 2}, "version 2", id="version-2"),
    pytest.param({"steps": [], "producer": 3}, "'producer'", id="producer"),
    pytest.param({"steps": [], "comment": "hi"}, "unknown key(s) 'comment'", id="top-unknown-key"),
    *[pytest.param({"steps": [PRUNE, s]}, "step 2: must be an object", id=f"step-{type(s).__name__}")
      for s in ([PRUNE], 3, "prune", None)],
    *[pytest.param({"steps": [{**PRUNE, "op": op}]}, "step 1: unknown op", id=f"op-{type(op).__name__}")
      for op in (["prune"], {"prune": 1}, 3, None, "Prune")],
    *_wrong("method", PRUNE, [3, ["l1_unstructured"], {"name": "x"}, "", None, "l1\x00x"]),
    *_wrong("targets", PRUNE, ["fc1.weight", {"fc1.weight": 1}, [1], [""], [["fc1.weight"]], None, [], ["a\x00"]]),
    *_wrong("types", PRUNE, ["Linear", [1], {"Linear": 1}, None, [None]]),
    *_wrong("amount", PRUNE, ["0.5", True, False, [0.5], {"value": 0.5}, None]),
    *_wrong("n", LN, [{"p": 2}, [2], True, None, "nan", "two", NAN, 0, -1, 0.5, 9, 1e308, 10**30]),
    *_wrong("dim", LN, [1.0, "0", True, [0], {"d": 0}, None]),
    *_wrong("params", PRUNE, [[], "x", 3, None, True, {"": 1}]),
    *_wrong("mask", {**PRUNE, "method": "custom_from_mask"}, [3, [], {}, "", None, "m\x00.pt", True]),
    *_wrong("seed", PRUNE, [-1, MAX_SEED + 1, 10**30, 1.5, "1", True, None, [1]]),
    *_wrong("seed", GLOBAL, [-5, 2**64]),
    *_wrong("amount", GLOBAL, ["20%", None]),
    pytest.param({"steps": [{**PRUNE, "params": {1: "x"}}]}, "step 1: 'params'", id="params-int-key"),
    pytest.param({"steps": [{**PRUNE, "params": {None: "x"}}]}, "step 1: 'params'", id="params-none-key"),
    pytest.param({"steps": [PRUNE] * (MAX_RECIPE_STEPS + 1)}, f"at most {MAX_RECIPE_STEPS:,}", id="too-many-steps"),
    pytest.param({"steps": [{**PRUNE, "params": {"x": nested(MAX_RECIPE_DEPTH)}}]}, "nested too deeply",
                 id="too-deep"),
]


@pytest.mark.parametrize(("recipe", "message"), BAD)
def test_validate_recipe_names_the_field(recipe: object, message: str) -> None:
    """Each wrong type or value: a RecipeError of one short line naming the step and the field."""
    with pytest.raises(RecipeError) as info:
        validate_recipe(recipe)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text and len(text) < 300, text


@pytest.mark.parametrize("recipe", [
    {"steps": [{**PRUNE, "seed": 0}, {**PRUNE, "seed": MAX_SEED}]},
    {"steps": [{**LN, "n": "inf"}, {**LN, "n": float("-inf")}, {**LN, "n": 1.5}, {**LN, "n": "fro"}]},
    {"steps": [{**PRUNE, "amount": 3}, {**PRUNE, "params": {}}, {**PRUNE, "types": []}]},
    {"format": "sparsegui-recipe", "version": 1, "producer": "sparsegui 9", "steps": [GLOBAL]},
    {"steps": [PRUNE] * MAX_RECIPE_STEPS},
    {"steps": [{**PRUNE, "params": {"x": nested(MAX_RECIPE_DEPTH - 5)}}]},
], ids=["seed-bounds", "norms", "counts-and-empties", "full-header", "step-budget", "nested-ok"])
def test_valid_recipes_pass(recipe: dict[str, Any]) -> None:
    assert validate_recipe(recipe) == recipe["steps"]


# -- files ---------------------------------------------------------------------------------------------------------


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


FILES = {
    "deep-array": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "deep-object": ('{"a":' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
    "deep-under-python-limit": (json.dumps({"steps": [{**PRUNE, "params": {"x": nested(200)}}]}),
                                "nested too deeply"),
    "duplicate-key": ('{"steps": [{"op": "remove", "op": "prune", "targets": ["x"]}]}', "'op' appears twice"),
    "huge-int": ('{"steps": [{"op": "prune", "method": "foobar", "targets": ["x"], "seed": ' + "9" * 5000 + "}]}",
                 "not valid JSON"),
    "top-number": ("42", "JSON object"),
    "steps-string": ('{"steps": "prune"}', "'steps'"),
    "nan-n": ('{"steps": [{"op": "prune", "method": "ln_structured", "targets": ["x"], "amount": 0.5, "n": NaN, '
              '"dim": 0}]}', "'n'"),
}


@pytest.mark.parametrize("case", list(FILES))
def test_load_recipe_refuses_bad_files(tmp_path: Path, case: str) -> None:
    text, message = FILES[case]
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path / "r.json", text))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_recipe_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.json", b"\xef\xbb\xbf" + json.dumps({"steps": [PRUNE]}).encode())
    assert load_recipe(path) == {"steps": [PRUNE]}


def test_recipe_over_the_size_budget_is_refused_unread(tmp_path: Path) -> None:
    """A (sparse) file one byte over the budget is refused from its size, naming the budget."""
    path = tmp_path / "big.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_RECIPE_BYTES + 1)
    with pytest.raises(RecipeError, match=f"{MAX_RECIPE_BYTES // 2**20} MiB"):
        load_recipe(path)


@pytest.mark.parametrize("make", ["folder", "dev-zero", "link-to-dev-zero", "dev-null"])
def test_recipe_that_is_not_a_regular_file(tmp_path: Path, make: str) -> None:
    path = {"folder": tmp_path, "dev-zero": Path("/dev/zero"), "dev-null": Path("/dev/null")}.get(make)
    if make == "link-to-dev-zero":
        path = tmp_path / "r.json"
        path.symlink_to("/dev/zero")
    assert path is not None
    with pytest.raises(RecipeError, match="not a regular file"):
        load_recipe(path)


# -- through the CLI, in a real process (a FIFO must not hang) ---------------------------------------------------


# Runs several 'sparsegui' command lines in one child process (one torch import), each with its own stdout/stderr.
CHILD = """
import contextlib, io, json, sys
from sparsegui.cli import main
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:
            code = exc.code
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def run_cli_lines(lines: list[list[str]], cwd: Path) -> list[tuple[int, str, str]]:
    """Each command line's (exit status, stdout, stderr); a hang fails the test by the timeout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SPARSEGUI_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(lines)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [tuple(r) for r in json.loads(proc.stdout)]


def test_fifo_recipe_model_and_mask_file_do_not_hang(tmp_path: Path) -> None:
    """A FIFO (no writer) or a device given as the recipe, the model (apply and inspect) or a mask file the recipe
    names: exit 2, one line, at once; nothing written."""
    os.mkfifo(tmp_path / "pipe.json")
    os.mkfifo(tmp_path / "pipe.pt")
    _write(tmp_path / "ok.json", json.dumps({"steps": [PRUNE]}))
    _write(tmp_path / "mask.json", json.dumps({"steps": [{"op": "prune", "method": "custom_from_mask",
                                                          "targets": ["fc3.bias"], "mask": "pipe.pt"}]}))
    cases = [
        (["apply", "pipe.json", "--demo", "lenet", "-o", "out.pt"], "FIFO"),
        (["apply", "ok.json", "pipe.pt", "-o", "out.pt"], "FIFO"),
        (["apply", "mask.json", "--demo", "lenet", "-o", "out.pt"], "FIFO"),
        (["apply", "/dev/zero", "--demo", "lenet", "-o", "out.pt"], "character device"),
        (["apply", "ok.json", "/dev/zero", "-o", "out.pt"], "character device"),
        (["inspect", "pipe.pt", "--json"], "FIFO"),
        (["inspect", "pipe.pt"], "FIFO"),
    ]
    results = run_cli_lines([args for args, _ in cases], tmp_path)
    for (args, words), (code, out, err) in zip(cases, results, strict=True):
        assert code == 2, (args, err)
        assert out == "" and len(err.splitlines()) == 1, (args, err)
        assert err.startswith("error: ") and words in err and "not a regular file" in err, (args, err)
    assert not (tmp_path / "out.pt").exists()


CLI_BAD = {
    "amount-string": ({"steps": [{**PRUNE, "amount": "0.5"}]}, "'amount'"),
    "targets-string": ({"steps": [{**PRUNE, "targets": "fc1.weight"}]}, "'targets'"),
    "n-object": ({"steps": [{**LN, "n": {"p": 2}}]}, "'n'"),
    "dim-float": ({"steps": [{**LN, "dim": 0.0}]}, "'dim'"),
    "params-list": ({"steps": [{**PRUNE, "params": [1]}]}, "'params'"),
    "mask-number": ({"steps": [{"op": "prune", "method": "custom_from_mask", "targets": ["fc3.bias"], "mask": 7}]},
                    "'mask'"),
    "seed-negative": ({"steps": [{**PRUNE, "method": "random_unstructured", "seed": -1}]}, "'seed'"),
    "op-list": ({"steps": [{**PRUNE, "op": ["prune"]}]}, "unknown op"),
    "too-many-steps": ({"steps": [PRUNE] * (MAX_RECIPE_STEPS + 1)}, f"{MAX_RECIPE_STEPS:,}"),
    "deep": ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
    "nan-amount": ('{"steps": [{"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight"], '
                   '"amount": NaN}]}', "amount=nan"),
}


@pytest.mark.parametrize("case", list(CLI_BAD))
def test_apply_with_a_bad_recipe_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str) -> None:
    recipe, words = CLI_BAD[case]
    path = _write(tmp_path / "r.json", recipe if isinstance(recipe, str) else json.dumps(recipe))
    out = tmp_path / "out.pt"
    assert_one_line_error(cli(capsys, "apply", path, "--demo", "lenet", "-o", out), words)
    assert sorted(os.listdir(tmp_path)) == ["r.json"]
