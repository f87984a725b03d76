"""How the benchmark runner runs a task in a fresh process and summarises the runs (medians, ranges, tables)."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.memory import run_process

ROOT = Path(__file__).resolve().parents[1]


def run_json(argv: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a benchmark module in a fresh process; its last stdout line (JSON) plus the whole process's figures."""
    run = run_process([sys.executable, *argv], cwd=str(ROOT), env=env)
    if run.returncode != 0:
        tail = run.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(argv)} failed ({run.returncode}): {' | '.join(tail)}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["process"] = {"seconds": run.seconds, "peak_rss": run.peak_rss, "peak_anon": run.peak_anon,
                         "cpu_seconds": run.cpu_seconds, "load_before": run.load_before}
    return result


def repeated(make: Callable[[], dict[str, Any]], repeat: int) -> dict[str, Any]:
    """Run ``make`` ``repeat`` times: ``{"runs": [...], "median": {...}}`` (medians of every numeric leaf)."""
    runs = [make() for _ in range(repeat)]
    return {"runs": runs, "median": _median(runs)}


def _median(runs: list[Any]) -> Any:
    first = runs[0]
    if isinstance(first, dict):
        return {k: _median([r[k] for r in runs]) for k in first if all(isinstance(r, dict) and k in r for r in runs)}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return statistics.median(runs)
    return first


def _values(result: dict[str, Any], *path: str) -> list[float]:
    out = []
    for run in result["runs"]:
        for key in path:
            run = run[key]
        out.append(float(run))
    return out


def secs(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def gb(value: float) -> str:
    return f"{value / 2**30:.2f} GB"


def spread(result: dict[str, Any], *path: str, fmt: Callable[[float], str] = secs) -> str:
    """The median, and with several runs their range: ``25.9 s (24.1–27.3 s, 3 runs)``."""
    values = _values(result, *path)
    median = fmt(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} ({fmt(min(values))}–{fmt(max(values))}, {len(values)} runs)"


def med(result: dict[str, Any], *path: str) -> float:
    return statistics.median(_values(result, *path))


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [f"| {title} | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def progress(text: str) -> None:
    print(f"  {text} …", file=sys.stderr, flush=True)
