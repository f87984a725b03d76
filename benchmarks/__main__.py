"""SparseGUI's core and app against plain ``torch.nn.utils.prune``, side by side, on GPT-2-shaped checkpoints.

    python -m benchmarks                      # ~125M parameters, core and GUI
    python -m benchmarks --size 1b --no-gui   # ~1B parameters (4 GB of weights; needs ~16 GB of memory)
    python -m benchmarks --device cuda        # the same on a CUDA GPU (memory: torch.cuda peak allocated)

Each figure comes from a fresh process doing one task once (wall seconds, peak memory above what the process held
before the task), the plain way and SparseGUI's way on the same checkpoint; ``--repeat`` runs each several times and
reports the median. The table is Markdown, ready for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.models import SIZES, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
LABELS = {
    "open": "open the checkpoint",
    "global_l1": "global L1 50 % (all weight matrices)",
    "l1_each": "L1 50 % on each weight matrix",
    "ln_structured": "L2-structured 50 % (dim 0) on each",
    "remove": "remove all pruning",
    "export": "clean export (.pt)",
    "undo": "undo the global prune",
}
TORCH_GLOBAL_LIMIT = 400_000_000
"""``global_unstructured`` needs ~47 bytes per weight (NOTES): beyond this it does not fit in 24 GB and is skipped."""


@dataclass
class Row:
    task: str
    torch: tuple[float, int] | None
    ours: tuple[float, int] | None
    note: str = ""


def _one(task: str, side: str, checkpoint: Path, device: str, repeat: int) -> tuple[float, int] | None:
    seconds, extra = [], []
    for _ in range(repeat):
        proc = subprocess.run([sys.executable, "-m", "benchmarks.core", task, side, str(checkpoint), device],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  {side} {task} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        seconds.append(result["seconds"])
        extra.append(result["extra_bytes"])
    return statistics.median(seconds), int(statistics.median(extra))


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f} GB"


def _cell(value: tuple[float, int] | None) -> str:
    return "—" if value is None else f"{value[0]:.2f} s, +{_gib(value[1])}"


def _ratio(row: Row) -> str:
    if row.torch is None or row.ours is None:
        return row.note or "—"
    speed = row.torch[0] / max(row.ours[0], 1e-9)
    memory = row.ours[1] / row.torch[1] if row.torch[1] > 0 else float("nan")
    return f"{speed:.1f}× faster, {memory:.2f}× the memory"


def core_rows(size: str, checkpoint: Path, device: str, repeat: int) -> list[Row]:
    rows = []
    parameters = SIZES[size].parameters
    for task in LABELS:
        print(f"  {size} {task} …", file=sys.stderr, flush=True)
        ours = _one(task, "sparsegui", checkpoint, device, repeat)
        if task == "undo":
            rows.append(Row(task, None, ours, "SparseGUI only (torch has no undo)"))
            continue
        if task == "global_l1" and parameters > TORCH_GLOBAL_LIMIT and device == "cpu":
            rows.append(Row(task, None, ours, f"torch needs ≈{parameters * 47 / 1e9:.0f} GB: not run"))
            continue
        rows.append(Row(task, _one(task, "torch", checkpoint, device, repeat), ours))
    return rows


def gui_figures(checkpoint: Path) -> dict[str, float] | None:
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gui", str(checkpoint)], cwd=ROOT,
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"  GUI benchmark failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=[*SIZES, "all"], default="125m")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "sparsegui-bench",
                        help="where the checkpoints are written (kept between runs)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each task; the median is reported")
    parser.add_argument("--no-gui", action="store_true", help="skip the GUI measurements (125M only)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = ["125m", "1b"] if args.size == "all" else [args.size]
    report: dict[str, object] = {"device": args.device}
    print(f"| work ({args.device}) | plain torch.nn.utils.prune | SparseGUI | SparseGUI vs torch |")
    print("|---|---|---|---|")
    for size in sizes:
        checkpoint = write_checkpoint(SIZES[size], args.work)
        rows = core_rows(size, checkpoint, args.device, args.repeat)
        report[size] = [row.__dict__ for row in rows]
        for row in rows:
            print(f"| {size}: {LABELS[row.task]} | {_cell(row.torch)} | {_cell(row.ours)} | {_ratio(row)} |",
                  flush=True)
    if not args.no_gui and "125m" in sizes and args.device == "cpu":
        figures = gui_figures(write_checkpoint(SIZES["125m"], args.work))
        report["gui"] = figures
        if figures:
            print()
            print("| GUI (125m, offscreen) | measured |")
            print("|---|---|")
            print(f"| longest event-loop stall during a global L1 50 % prune | {figures['max_stall_ms']:.0f} ms |")
            print(f"| the 50257×768 `wte` mask on screen after selecting it | {figures['mask_show_ms']:.0f} ms |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
