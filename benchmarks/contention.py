"""A global L1 50 % while another CPU-bound program runs, against the same on an idle machine.

    python -m benchmarks.contention CHECKPOINT [--repeat 3] [--load yes|matmul]   # the comparison (JSON)
    python -m benchmarks.contention --one CHECKPOINT [--threads 1]               # one measurement

Each measurement is a fresh process that opens the checkpoint, reads every weight once (so the originals are
resident) and times ``doc.global_prune("l1_unstructured", weights, 0.5)`` — with torch's default thread count or
``torch.set_num_threads(1)``. The competing load is two ``yes > /dev/null`` (one per core here) or a Python
process doing torch matmuls in a loop; it starts before the measured process and stops after it. Runs of the four
configurations are interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MATMUL = "import torch\na = torch.randn(1024, 1024)\nwhile True:\n    a = (a @ a).clamp_(-1, 1)\n"


def one(checkpoint: Path, threads: int | None) -> dict[str, Any]:
    import torch

    from benchmarks.memory import measure
    from benchmarks.scale import weights_of
    from sparsegui.core.document import Document

    if threads is not None:
        torch.set_num_threads(threads)
    doc = Document.open(checkpoint)
    names = weights_of(doc)
    for name in names:
        doc.state.tensors[name].values.tensor().sum()  # resident, as in the other rows
    with measure() as m:
        doc.global_prune("l1_unstructured", names, 0.5)
    return {"seconds": m.seconds, "peak_anon": m.peak_anon, "threads": torch.get_num_threads()}


def _load(kind: str) -> list[subprocess.Popen[bytes]]:
    if kind == "yes":
        return [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(os.cpu_count() or 2)]
    return [subprocess.Popen([sys.executable, "-c", MATMUL])]


def _measure(checkpoint: Path, threads: int | None) -> float:
    argv = [sys.executable, "-m", "benchmarks.contention", "--one", str(checkpoint)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def load_average() -> float:
    """The machine's 1-minute load average: other people's work shows here (an "idle" run is idle only if low)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def compare(checkpoint: Path, repeat: int, load: str) -> dict[str, Any]:
    runs: dict[str, list[float]] = {}
    loads: dict[str, list[float]] = {}
    for _ in range(repeat):
        for threads in (None, 1):
            for loaded in (False, True):
                key = f"{'loaded' if loaded else 'idle'}-{'1' if threads else 'default'}"
                loads.setdefault(key, []).append(load_average())
                procs = _load(load) if loaded else []
                try:
                    runs.setdefault(key, []).append(_measure(checkpoint, threads))
                finally:
                    for proc in procs:
                        proc.kill()
                        proc.wait()
    medians = {k: statistics.median(v) for k, v in runs.items()}
    return {"load": load, "runs": runs, "load_average_before": loads, "median": medians,
            "slowdown_default": medians["loaded-default"] / medians["idle-default"],
            "slowdown_one_thread": medians["loaded-1"] / medians["idle-1"],
            "loaded_one_vs_idle_default": medians["loaded-1"] / medians["idle-default"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--one", action="store_true", help="one measurement in this process")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--load", choices=("yes", "matmul"), default="yes")
    args = parser.parse_args()
    result = one(args.checkpoint, args.threads) if args.one else compare(args.checkpoint, args.repeat, args.load)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
