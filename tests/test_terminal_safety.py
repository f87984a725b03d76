"""Names from files cannot drive the terminal: ``inspect`` tables and ``error:`` lines escape control characters.

A checkpoint's tensor names, an index's shard names and a file's own name are chosen by whoever made the file.
Printed raw, ``"\\x1b[2J"`` clears the screen, ``"\\r"`` overwrites a line, ``"\\nerror: fake"`` adds a line that looks
like SparseGUI's own, and U+202E reverses the text after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sparsegui.core.text import is_unsafe, printable
from tests.test_cli import Result, assert_one_line_error, cli

ROOT = Path(__file__).resolve().parents[1]

HOSTILE = [
    "\x1b[2J",  # clear the screen
    "\x1b]0;owned\x07",  # set the window title
    "\r",  # back to the start of the line
    "\nerror: fake",  # a second, fake error line
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\x9b31m",  # C1 CSI
    "\x00",  # NUL
    "\x7f",  # DEL
    "\u2028",  # line separator
    "\u200b",  # zero-width space
    "\ufeff",  # byte order mark
    "\x0b\x0c\x1c\x85",  # characters str.splitlines treats as line breaks
    "\udcff",  # an undecodable byte of a file name (surrogateescape)
]
SAFE = ["weight", "conv1.weight", "×", "naïve", "权重", "🙂", "a\\x1b", "tab\\t", "C:\\models\\m.pt", " spaced "]

TENSOR_NAMES = [
    "clear\x1b[2J.weight",
    "cr\rfake.weight",
    "line\nerror: fake.weight",
    "bidi\u202ecod.exe.weight",
    "title\x1b]0;owned\x07.bias",
    "plain.weight",
]


def assert_terminal_safe(text: str) -> None:
    """Every character is one a terminal only shows; line breaks are plain '\\n' only."""
    bad = [c for c in text if c != "\n" and is_unsafe(c)]
    assert not bad, [hex(ord(c)) for c in bad]


# -- the helper -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=[f"U+{ord(h[0]):04X}" for h in HOSTILE])
def test_printable_escapes_every_control(hostile: str) -> None:
    """Control, format, surrogate and separator characters become visible escapes; the text stays one line."""
    text = f"layer{hostile}.weight"
    out = printable(text)
    assert_terminal_safe(out)
    assert len(out.splitlines()) == 1 and "\n" not in out
    assert out.startswith("layer") and out.endswith(".weight")
    first = hostile[0]
    code = ord(first)
    expected = {"\n": "\\n", "\r": "\\r"}.get(first) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    assert expected in out, (out, expected)


@pytest.mark.parametrize("safe", SAFE)
def test_printable_leaves_ordinary_text_alone(safe: str) -> None:
    """Letters of every script, symbols, emoji, spaces and backslashes print as they are."""
    assert printable(safe) == safe


def test_printable_takes_any_object() -> None:
    assert printable(3) == "3"
    assert printable(Path("a\nb")) == "a\\nb"


# -- inspect -----------------------------------------------------------------------------------------------------


@pytest.fixture
def hostile_file(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.safetensors"
    save_file({name: torch.ones(2, 3) for name in TENSOR_NAMES}, str(path))
    return path


def test_inspect_table_escapes_tensor_and_module_names(capsys: pytest.CaptureFixture[str], hostile_file: Path) -> None:
    """The table holds no raw control character; one row per tensor; each hostile name shown escaped."""
    result = cli(capsys, "inspect", hostile_file)
    assert result.code == 0, result.err
    assert_terminal_safe(result.out)
    lines = result.out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("MODULE"))
    rows = lines[header + 1:]
    assert len(rows) == len(TENSOR_NAMES)
    for escaped in ("clear\\x1b[2J", "cr\\rfake", "line\\nerror: fake", "bidi\\u202ecod", "title\\x1b]0;owned\\x07"):
        assert sum(row.startswith(escaped) for row in rows) == 1, escaped
    assert not any(line.startswith("error:") for line in lines)


def test_inspect_json_escapes_and_round_trips(capsys: pytest.CaptureFixture[str], hostile_file: Path) -> None:
    """--json is ASCII (json.dump escapes controls) and gives back the names exactly."""
    result = cli(capsys, "inspect", hostile_file, "--json")
    assert result.code == 0, result.err
    assert result.out.isascii()
    assert_terminal_safe(result.out)
    report = result.json()
    names = {f"{m['name']}.{t['name']}" for m in report["modules"] for t in m["tensors"]}
    assert names == set(TENSOR_NAMES)


# -- error lines --------------------------------------------------------------------------------------------------


def assert_safe_error(result: Result, *fragments: str) -> None:
    assert_one_line_error(result, *fragments)
    assert_terminal_safe(result.err)


@pytest.mark.parametrize("hostile", HOSTILE[:5] + HOSTILE[-2:], ids=["esc", "osc", "cr", "lf", "rlo", "breaks", "surr"])
def test_file_name_in_an_error_is_escaped(capsys: pytest.CaptureFixture[str], tmp_path: Path, hostile: str) -> None:
    """An empty file whose name carries a control sequence: one error line, the name escaped."""
    name = f"model{hostile}.pt"
    try:
        path = tmp_path / name
        path.write_bytes(b"")
    except (OSError, ValueError, UnicodeEncodeError):
        pytest.skip("this file system refuses the name")
    assert_safe_error(cli(capsys, "inspect", path), "model", "empty")


def test_shard_name_from_an_index_is_escaped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A sharded index naming a corrupt shard whose file name fakes an error line: still one escaped line."""
    shard = "x\x1b[2J\rerror: fake\n\u202e.safetensors"
    (tmp_path / shard).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}..")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": shard}}), encoding="utf-8")
    for args in (["inspect", index], ["inspect", index, "--json"]):
        assert_safe_error(cli(capsys, *args), "x\\x1b[2J\\rerror: fake\\n\\u202e.safetensors")


def test_recipe_target_in_an_error_is_escaped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A recipe target that matches nothing, with control characters in it: one escaped line."""
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"steps": [{"op": "prune", "method": "l1_unstructured", "amount": 0.5,
                                             "targets": ["fc9\x1b[2J\nerror: fake\u202e"]}]}), encoding="utf-8")
    result = cli(capsys, "apply", recipe, "--demo", "lenet", "-o", tmp_path / "out.pt")
    assert_safe_error(result, "fc9")
    assert not (tmp_path / "out.pt").exists()


def test_usage_error_is_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's own messages quote the arguments: an unknown option with controls stays one escaped line."""
    for option in ("--bogus\x1b[2J\rerror:\x85fake", "--bogus\x1b[2J\nerror:fake\u202e"):
        assert_safe_error(cli(capsys, "inspect", "--demo", "lenet", option), "--bogus\\x1b[2J")


def test_real_stderr_bytes_of_a_hostile_error(tmp_path: Path) -> None:
    """In a real process: stderr is exactly one line of bytes with no ESC, CR or extra LF, exit status 2."""
    path = tmp_path / "m\x1b[2J\rerror: fake\n.pt"
    path.write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SPARSEGUI_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "sparsegui", "inspect", str(path)], capture_output=True,
                          env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert proc.stderr.count(b"\n") == 1 and proc.stderr.endswith(b"\n")
    assert not any(b in proc.stderr for b in (b"\x1b", b"\r", b"\xe2\x80\xae"))
    assert proc.stderr.startswith(b"error: ")
