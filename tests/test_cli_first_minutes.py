"""What a new user meets first on the command line: help that shows both forms, mistyped commands named as such,
and --version/--help answering without loading torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import assert_one_line_error, cli


def test_help_shows_the_gui_form_and_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    assert "sparsegui [PATH]" in text and "opens the desktop app" in text
    for command in ("inspect", "apply", "methods", "devices"):
        assert command in result.out


@pytest.mark.parametrize(("args", "hint"), [
    (["inspct", "x.pt"], "did you mean 'inspect'"),
    (["aply", "r.json", "m.pt", "-o", "o.pt"], "did you mean 'apply'"),
    (["methds"], "did you mean 'methods'"),
    (["frobnicate"], "unknown command 'frobnicate'"),
])
def test_a_mistyped_command_is_named_as_one(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, args: list[str], hint: str) -> None:
    """Not an app launch, not a complaint about a missing file: one line saying the command is unknown."""
    monkeypatch.chdir(tmp_path)
    result = cli(capsys, *args)
    assert_one_line_error(result, hint)
    assert "unknown command" in result.err and "no such file" not in result.err


def test_a_file_named_like_a_word_still_opens(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A model file without an extension in the working folder is a path, not a mistyped command."""
    from sparsegui.core.document import Document

    monkeypatch.chdir(tmp_path)
    Document.demo("lenet").export(tmp_path / "model.pt")
    (tmp_path / "model.pt").rename(tmp_path / "model")
    result = cli(capsys, "inspect", "model")
    assert result.code == 0, result.err


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_do_not_import_torch_or_qt(flag: str) -> None:
    """They answer at once: neither torch nor Qt is imported (torch alone takes over a second to import)."""
    code = ("import sys\nfrom sparsegui.cli import main\n"
            f"try:\n    main([{flag!r}])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'PySide6', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
