"""A global L1 50 % as a whole process: ``sparsegui apply recipe.json ckpt.pt -o out.pt`` against the plain-torch
script doing the same (load, ``global_unstructured``, ``remove``, ``torch.save``), imports and all.

    python -m benchmarks.apply pairs CHECKPOINT [--pairs 5]   # interleaved runs of both, medians and ratios
    python -m benchmarks.apply plain CHECKPOINT OUT            # the plain-torch script itself
    python -m benchmarks.apply profile CHECKPOINT              # one `sparsegui apply` timed by phase, and cProfiled

Each run is timed from spawn to exit; peak resident memory is the kernel's ``ru_maxrss`` for that child
(``os.wait4``), peak anonymous memory is sampled from ``/proc/PID/statm``. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.memory import ProcessRun, run_process

ROOT = Path(__file__).resolve().parents[1]
AMOUNT = 0.5


def weight_names(checkpoint: Path) -> list[str]:
    """The checkpoint's 2-D tensors (Linear and Embedding weights), in file order."""
    import torch

    state = torch.load(checkpoint, mmap=True, weights_only=True)
    return [key for key, tensor in state.items() if tensor.dim() == 2]


def write_recipe(checkpoint: Path, folder: Path) -> Path:
    recipe = {"steps": [{"op": "global", "method": "l1_unstructured", "targets": weight_names(checkpoint),
                         "amount": AMOUNT}]}
    path = folder / f"recipe-global-{checkpoint.stem}.json"
    path.write_text(json.dumps(recipe, indent=1) + "\n", encoding="utf-8")
    return path


def sparsegui_argv(recipe: Path, checkpoint: Path, out: Path) -> list[str]:
    """``sparsegui apply`` (``python -m sparsegui`` runs the console script's entry point)."""
    return [sys.executable, "-m", "sparsegui", "apply", str(recipe), str(checkpoint), "-o", str(out)]


def plain_argv(checkpoint: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.apply", "plain", str(checkpoint), str(out)]


def plain(checkpoint: Path, out: Path) -> None:
    """The tutorial's way: load the state_dict into the model, ``global_unstructured`` over every weight matrix,
    ``remove`` each, save the state_dict. (The checkpoint is memory-mapped, which only helps torch.)"""
    import torch
    from torch.nn.utils import prune

    from benchmarks.models import SIZES, build_on_meta, prunable

    config = next(c for c in SIZES.values() if checkpoint.stem == f"gpt2-{c.name}")
    model = build_on_meta(config)
    model.load_state_dict(torch.load(checkpoint, mmap=True, weights_only=True), assign=True)
    pairs = prunable(model)
    prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=AMOUNT)
    for module, name in pairs:
        prune.remove(module, name)
    torch.save(model.state_dict(), out)


def _run(argv: list[str], out: Path) -> ProcessRun:
    run = run_process(argv, cwd=str(ROOT))
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:4])} failed: {run.stderr.strip().splitlines()[-1:]}")
    return run


def same_zeros(a: Path, b: Path) -> dict[str, int]:
    """Compare two exported state_dicts: tensors, entries whose zero-ness differs, zeros in each."""
    import torch

    x, y = torch.load(a, mmap=True, weights_only=True), torch.load(b, mmap=True, weights_only=True)
    if set(x) != set(y):
        raise AssertionError(f"different keys: {sorted(set(x) ^ set(y))[:3]}")
    differ = sum(int(((x[k] == 0) != (y[k] == 0)).sum()) for k in x)
    values = sum(int((x[k] != y[k]).sum()) for k in x)
    return {"tensors": len(x), "zero_pattern_differs": differ, "values_differ": values,
            "zeros_a": sum(int((x[k] == 0).sum()) for k in x), "zeros_b": sum(int((y[k] == 0).sum()) for k in y)}


def pairs(checkpoint: Path, work: Path, count: int) -> dict[str, Any]:
    """``count`` interleaved pairs (SparseGUI then torch, torch then SparseGUI, …); medians of the ratios."""
    recipe = write_recipe(checkpoint, work)
    ours_out, torch_out = work / f"apply-ours-{os.getpid()}.pt", work / f"apply-torch-{os.getpid()}.pt"
    runs: list[dict[str, Any]] = []
    compared: dict[str, int] = {}
    try:
        for index in range(count):
            order = ("ours", "torch") if index % 2 == 0 else ("torch", "ours")
            pair: dict[str, Any] = {}
            for side in order:
                out = ours_out if side == "ours" else torch_out
                out.unlink(missing_ok=True)
                argv = sparsegui_argv(recipe, checkpoint, out) if side == "ours" else plain_argv(checkpoint, out)
                run = _run(argv, out)
                pair[side] = {"seconds": run.seconds, "peak_rss": run.peak_rss, "peak_anon": run.peak_anon}
            runs.append(pair)
            if index == 0:
                compared = same_zeros(ours_out, torch_out)
    finally:
        ours_out.unlink(missing_ok=True)
        torch_out.unlink(missing_ok=True)

    def med(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in runs)

    def ratio(key: str) -> float:
        return statistics.median(r["ours"][key] / r["torch"][key] for r in runs)

    return {"pairs": runs, "compared": compared,
            "median": {side: {k: med(side, k) for k in ("seconds", "peak_rss", "peak_anon")}
                       for side in ("ours", "torch")},
            "ratio": {k: ratio(k) for k in ("seconds", "peak_rss", "peak_anon")},
            "spread": {side: {k: [min(r[side][k] for r in runs), max(r[side][k] for r in runs)]
                              for k in ("seconds", "peak_rss", "peak_anon")} for side in ("ours", "torch")}}


PHASES = {
    "open": ("sparsegui.core.document", "Document", "open"),
    "prune": ("sparsegui.cli.commands", None, "apply_recipe"),
    "export": ("sparsegui.core.document", "Document", "export"),
    "summary": ("sparsegui.core.document", "Document", "scan"),
}
"""Where `sparsegui apply` spends its time: each phase is the function it calls (the summary line's count is
``Document.scan``; totalling the counts after it is included in "other"). The summary's count runs on a helper
thread while the export writes (OVERLAPPING): its time is part of the export's, not added to it."""
OVERLAPPING = {"summary"}


def phases(recipe: Path, checkpoint: Path, out: Path, profile_to: Path | None) -> dict[str, Any]:
    """One ``sparsegui apply`` in this fresh process: the import of everything the command uses, then the command
    with each phase timed (wall clock); with ``profile_to``, under cProfile instead (stats written there)."""
    import cProfile
    import importlib

    start = time.perf_counter()
    profiler = cProfile.Profile() if profile_to is not None else None
    if profiler is not None:
        profiler.enable()
    import sparsegui.cli.commands  # noqa: F401  (what `sparsegui apply` imports before it starts)
    from sparsegui.cli import main as cli_main

    imported = time.perf_counter()
    spent = dict.fromkeys(PHASES, 0.0)
    for phase, (module_name, owner, name) in PHASES.items():
        holder = importlib.import_module(module_name)
        if owner is not None:
            holder = getattr(holder, owner)
        original = getattr(holder, name)

        def timed(*args: Any, _original: Any = original, _phase: str = phase, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_phase] += time.perf_counter() - begin

        setattr(holder, name, classmethod(lambda cls, *a, _t=timed, **k: _t(*a, **k)) if name == "open" else timed)
    code = cli_main(["apply", str(recipe), str(checkpoint), "-o", str(out)])
    total = time.perf_counter() - start
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile_to))
    if code != 0:
        raise RuntimeError(f"sparsegui apply exited with {code}")
    result = {"import": imported - start, **spent}
    result["other"] = total - sum(v for k, v in result.items() if k not in OVERLAPPING)
    return {"total_s": total, "phases": result}


def profile(checkpoint: Path, work: Path) -> dict[str, Any]:
    """``sparsegui apply`` in fresh processes: once with each phase timed, once under cProfile (the top
    functions by cumulative and own time)."""
    import io
    import pstats

    recipe = write_recipe(checkpoint, work)
    out = work / f"apply-profile-{os.getpid()}.pt"
    stats = work / f"apply-profile-{os.getpid()}.prof"
    results = []
    try:
        for profiled in (False, True):
            out.unlink(missing_ok=True)
            argv = [sys.executable, "-m", "benchmarks.apply", "phases", str(checkpoint), str(out), "--recipe",
                    str(recipe)] + (["--profile-to", str(stats)] if profiled else [])
            run = _run(argv, out)
            results.append(json.loads(run.stdout.strip().splitlines()[-1]))
        text = io.StringIO()
        pstats.Stats(str(stats), stream=text).sort_stats("cumulative").print_stats(40)
        top = [line for line in text.getvalue().splitlines() if line.strip()][-40:]
        text = io.StringIO()
        pstats.Stats(str(stats), stream=text).sort_stats("tottime").print_stats(20)
        own = [line for line in text.getvalue().splitlines() if line.strip()][-20:]
    finally:
        out.unlink(missing_ok=True)
        stats.unlink(missing_ok=True)
    timed, profiled_run = results
    return {"total_s": timed["total_s"], "phases": timed["phases"], "profiled_total_s": profiled_run["total_s"],
            "profiled_phases": profiled_run["phases"], "top_cumulative": top, "top_own": own}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("pairs", "plain", "profile", "phases"))
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: the checkpoint's)")
    parser.add_argument("--recipe", type=Path, help="phases: the recipe to apply")
    parser.add_argument("--profile-to", type=Path, help="phases: run under cProfile, stats written here")
    args = parser.parse_args()
    work = args.work or args.checkpoint.parent
    if args.mode == "plain":
        plain(args.checkpoint, args.out)
        return
    if args.mode == "phases":
        print(json.dumps(phases(args.recipe, args.checkpoint, args.out, args.profile_to)))
        return
    result = pairs(args.checkpoint, work, args.pairs) if args.mode == "pairs" else profile(args.checkpoint, work)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
