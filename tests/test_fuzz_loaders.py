"""Fuzzing the loaders (bounded for CI): valid files of every format, mutated by Hypothesis, either load or raise
SparseGUI's LoadError with a one-line message. No other exception, no hang. ``scripts/fuzz_loaders.py`` runs the
same for as long as you like.
"""

from __future__ import annotations

import faulthandler
import importlib.util
import itertools
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import forge as F

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_loaders", ROOT / "scripts" / "fuzz_loaders.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = load_script()
FORMATS: tuple[str, ...] = SCRIPT.FORMATS
EXAMPLES = 60  # per format: about 660 loads, a few seconds in all
_numbers = itertools.count()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> F.Corpus:
    return SCRIPT.build_corpus(tmp_path_factory.mktemp("fuzz-corpus"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-cases")


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """A load stuck in C (where the SIGALRM bound cannot reach) ends the run with a traceback instead of hanging."""
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


mutation = st.tuples(
    st.sampled_from(F.OPS),
    st.integers(0, 2**20),
    st.integers(0, 255),
    st.sampled_from((1, 2, 4, 8, 16, 64)),
)


@pytest.mark.parametrize("kind", FORMATS)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_files_load_or_raise_load_error(
    corpus: F.Corpus, workdir: Path, kind: str, data: st.DataObject
) -> None:
    """Any mutation of a valid file (structure-aware: inside zip members and safetensors headers too) gives a loaded
    model or a one-line LoadError within 30 s; anything else fails the test."""
    target = data.draw(st.sampled_from(SCRIPT.targets(corpus, kind)), label="target")
    ops = data.draw(st.lists(mutation, min_size=1, max_size=4), label="ops")
    folder = workdir / f"case{next(_numbers)}"
    try:
        with watchdog(120):
            result = SCRIPT.run_case(corpus, folder, {"kind": kind, "target": target, "ops": ops}, 30.0)
        assert result in ("loaded", "LoadError")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_every_valid_file_loads(corpus: F.Corpus, workdir: Path) -> None:
    """The unmutated corpus loads: the fuzz starts from files that work, so a LoadError means damage found."""
    for kind in FORMATS:
        assert SCRIPT.run_case(corpus, workdir / f"valid-{kind}", {"kind": kind, "target": "raw", "ops": []}, 30) \
            == "loaded", kind


def test_standalone_script_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The longer-run script fuzzes for the time asked, prints a summary per format, exits 0 with no failures."""
    code = SCRIPT.main(["--seconds", "1.5", "--format", "safetensors", "--seed", "3", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "seed 3" in out and "0 failure(s)" in out
    assert out.splitlines()[-2].startswith("safetensors")
    assert not (tmp_path / "current-case.json").exists()


def test_standalone_script_keeps_failing_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loader raising anything but LoadError is reported, its files and traceback kept, and the exit status is 1;
    --replay runs the kept case again."""

    def broken(path: Path, seconds: float = 30.0) -> str:
        raise KeyError("not a LoadError")

    monkeypatch.setattr(F, "load_outcome", broken)
    code = SCRIPT.main(["--seconds", "0.3", "--format", "zip", "--seed", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED zip" in out and "KeyError" in out
    kept = sorted((tmp_path / "failures").iterdir())
    assert kept and (kept[0] / "model.pt").exists() and "KeyError" in (kept[0] / "error.txt").read_text()
    assert SCRIPT.main(["--replay", str(kept[0] / "case.json"), "--out", str(tmp_path)]) == 1
    monkeypatch.undo()
    assert SCRIPT.main(["--replay", str(kept[0] / "case.json"), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] in ("loaded", "LoadError")
