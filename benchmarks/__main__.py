"""SparseGUI's core and app against plain ``torch.nn.utils.prune`` and against the floor, side by side.

    python -m benchmarks                            # ~125M (GPT-2 small, fp32): core rows, apply, history, GUI
    python -m benchmarks --size 1b --no-gui         # ~1B fp32 (4 GB): core rows and the streaming-selection floor
    python -m benchmarks --size 1b-bf16             # the same checkpoint in bf16 (2 GB)
    python -m benchmarks --size 7b --no-gui         # Llama-7B-shaped HF folder, bf16 (13.5 GB): open, prunes,
                                                    # undo/redo, sharded export against the disk floor
    python -m benchmarks --size 125m --only apply,history,contention --repeat 5

Every figure comes from a fresh process doing the work (wall seconds; peak anonymous memory — RssAnon, what the
process itself allocated — and peak resident memory — VmRSS, memory-mapped file pages included). ``--repeat N``
runs each N times and reports the median with the range. Checkpoints are generated under ``--work`` (chunk by chunk
for 7B) and kept between runs. The tables are Markdown, ready for the README; ``--json FILE`` writes every run.

Groups (``--only``): ``core`` (the original side-by-side rows), ``floor`` (prunes against a bare streaming
selection), ``scale`` (the 7B tasks), ``apply`` (``sparsegui apply`` as a whole process), ``history`` (20 steps,
undo all, redo all), ``contention`` (a competing CPU load), ``diff`` (two checkpoints compared, at 1B),
``gui`` (the app offscreen).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.models import LLAMA_SIZES, SIZES, write_checkpoint, write_llama_folder
from benchmarks.report import ROOT, gb, med, progress, repeated, run_json, secs, spread, table

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
GLOBAL_BYTES_PER_WEIGHT = 47
DEFAULT_GROUPS = {"tiny": ("core", "floor", "apply", "history", "diff", "scale", "gui"),
                  "125m": ("core", "apply", "history", "contention", "gui"),
                  "1b": ("core", "floor", "diff"), "1b-bf16": ("floor",), "7b": ("scale", "gui")}


# -- core: the original side-by-side rows ---------------------------------------------------------------------------
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


def _cell(value: tuple[float, int] | None) -> str:
    return "—" if value is None else f"{value[0]:.2f} s, +{gb(value[1])}"


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
        progress(f"{size} {task}")
        ours = _one(task, "sparsegui", checkpoint, device, repeat)
        if task == "undo":
            rows.append(Row(task, None, ours, "SparseGUI only (torch has no undo)"))
            continue
        if task == "global_l1" and parameters > TORCH_GLOBAL_LIMIT and device == "cpu":
            rows.append(Row(task, None, ours, f"torch needs ≈{parameters * 47 / 1e9:.0f} GB: not run"))
            continue
        rows.append(Row(task, _one(task, "torch", checkpoint, device, repeat), ours))
    return rows


def core_group(size: str, checkpoint: Path, device: str, repeat: int) -> tuple[str, list[dict[str, Any]]]:
    rows = core_rows(size, checkpoint, device, repeat)
    lines = [f"| {size}: {LABELS[r.task]} | {_cell(r.torch)} | {_cell(r.ours)} | {_ratio(r)} |" for r in rows]
    text = (f"| work ({device}; peak RSS above the start) | plain torch.nn.utils.prune | SparseGUI | SparseGUI vs "
            "torch |\n|---|---|---|---|\n" + "\n".join(lines))
    return text, [r.__dict__ for r in rows]


# -- floor: prunes against a bare streaming selection ---------------------------------------------------------------
def floor_group(size: str, checkpoint: Path, repeat: int, torch_layers: int | None) -> tuple[str, dict[str, Any]]:
    ck = str(checkpoint)
    out: dict[str, Any] = {}
    def job(*argv: str) -> Callable[[], dict[str, Any]]:
        return lambda: run_json(["-m", *argv])

    for kind, task, flag in (("global", "global_l1", []), ("each", "l1_each", ["--per-tensor"])):
        progress(f"{size} {kind}: SparseGUI, bare selection (bool, bits)")
        out[f"ours_{kind}"] = repeated(job("benchmarks.scale", task, ck), repeat)
        out[f"bare_{kind}"] = repeated(job("benchmarks.selection", ck, *flag), repeat)
        out[f"bits_{kind}"] = repeated(job("benchmarks.selection", ck, *flag, "--packed"), repeat)
    progress(f"{size} each: plain torch")
    layers = ["--torch-layers", str(torch_layers)] if torch_layers is not None else []
    out["torch_each"] = repeated(lambda: run_json(["-m", "benchmarks.scale", "l1_each", ck, "--side", "torch",
                                                   *layers]), repeat)

    def cell(result: dict[str, Any], measured: str) -> str:
        return (f"{spread(result, *measured.split('/'), 'seconds') if measured else spread(result, 'seconds')}; "
                f"anon {gb(med(result, *(measured.split('/') if measured else []), 'peak_anon'))} "
                f"(+{gb(med(result, *(measured.split('/') if measured else []), 'extra_anon'))})")

    rows = []
    for kind, label in (("global", "global L1 50 % over every 2-D weight"), ("each", "L1 50 % on each 2-D weight")):
        ours, bare, bits = out[f"ours_{kind}"], out[f"bare_{kind}"], out[f"bits_{kind}"]
        ratio_bool = med(ours, "measured", "peak_anon") / med(bare, "peak_anon")
        ratio_bits = med(ours, "measured", "peak_anon") / med(bits, "peak_anon")
        rows.append([f"{size}: {label}", cell(bare, ""), cell(bits, ""), cell(ours, "measured"),
                     f"{ratio_bool:.2f}× {'✓' if ratio_bool <= 1.3 else '✗'} / {ratio_bits:.2f}× "
                     f"{'✓' if ratio_bits <= 1.3 else '✗'} (≤ 1.3×)"])
    torch_each = out["torch_each"]
    extrapolated = "extrapolated" in torch_each["runs"][0]
    torch_s = med(torch_each, "extrapolated", "seconds") if extrapolated else med(torch_each, "measured", "seconds")
    torch_anon = (med(torch_each, "measured", "peak_anon") - med(torch_each, "measured", "extra_anon")
                  + med(torch_each, "extrapolated", "extra_anon")) if extrapolated else \
        med(torch_each, "measured", "peak_anon")
    ours_each = out["ours_each"]
    faster = torch_s / med(ours_each, "measured", "seconds")
    less = med(ours_each, "measured", "peak_anon") / torch_anon
    rows.append([f"{size}: plain `prune.l1_unstructured` on each" + (" (extrapolated)" if extrapolated else ""),
                 "—", "—", f"{secs(torch_s)}; anon {gb(torch_anon)}",
                 f"SparseGUI {faster:.1f}× faster at {less:.2f}× its anon memory "
                 f"{'✓' if faster > 1 and less <= 1 else '✗'}"])
    text = table("work (peak RssAnon, + above the start)",
                 ["bare selection, bool masks", "bare selection, bit masks", "SparseGUI",
                  "SparseGUI / bare (bool / bits)"], rows)
    return text, out


# -- scale: the 7B tasks --------------------------------------------------------------------------------------------
def scale_group(folder: Path, work: Path, repeat: int, torch_layers: int | None) -> tuple[str, dict[str, Any]]:
    from benchmarks import disk

    fd = str(folder)
    out: dict[str, Any] = {}

    def scale(*args: str) -> Callable[[], dict[str, Any]]:
        return lambda: run_json(["-m", "benchmarks.scale", *args])

    progress("open (transformers), open (rebuilt tree), plain open")
    out["open_hf"] = repeated(scale("open", fd), repeat)
    out["open_rebuilt"] = repeated(scale("open", fd, "--no-transformers"), repeat)
    out["open_torch"] = repeated(scale("open", fd, "--side", "torch"), repeat)
    progress("global L1 50 %")
    out["global"] = repeated(scale("global_l1", fd), repeat)
    progress("L1 50 % on each (SparseGUI, then plain torch" + (f" on {torch_layers} block(s))" if torch_layers
                                                               else ")"))
    out["each"] = repeated(scale("l1_each", fd), repeat)
    layers = ["--torch-layers", str(torch_layers)] if torch_layers is not None else []
    out["each_torch"] = repeated(scale("l1_each", fd, "--side", "torch", *layers), repeat)
    progress("undo and redo")
    out["undo_redo"] = repeated(scale("undo_redo", fd), repeat)
    progress("export, and the disk floor")
    out["export"] = repeated(scale("export", fd), repeat)
    out["disk"] = repeated(lambda: disk.floor(folder, work), repeat)

    entries = med(out["global"], "entries")
    rows: list[list[str]] = []

    def opened(key: str) -> str:
        r = out[key]
        return (f"{spread(r, 'total_s')} (import {secs(med(r, 'import_s'))}, open {secs(med(r, 'open_s'))}, "
                f"tree {secs(med(r, 'report_s'))}); anon {gb(med(r, 'peak_anon'))}, RSS {gb(med(r, 'peak_rss'))}")

    target = lambda ok: "✓" if ok else "✗"  # noqa: E731
    rows.append(["time to a usable tree: the tree rebuilt from the headers' keys (what the app shows first, "
                 "`transformers` installed or not)", "—",
                 opened("open_rebuilt"), f"{target(med(out['open_rebuilt'], 'total_s') <= 3)} ≤ 3 s"])
    rows.append(["the real classes (`LlamaForCausalLM` on meta; the app builds them in the background after "
                 "showing the tree; the CLI before it prints)", opened("open_torch"), opened("open_hf"),
                 "(in the background)"])

    def measured(key: str, part: str = "measured") -> str:
        r = out[key]
        return (f"{spread(r, part, 'seconds')}; anon {gb(med(r, part, 'peak_anon'))}, "
                f"RSS {gb(med(r, part, 'peak_rss'))}")

    rows.append([f"global L1 50 % over every 2-D weight ({entries / 1e9:.2f}B entries)",
                 f"not run: needs ≈{entries * GLOBAL_BYTES_PER_WEIGHT / 1e9:.0f} GB (≈47 B per weight)",
                 measured("global"), ""])
    et = out["each_torch"]
    if "extrapolated" in et["runs"][0]:
        fraction = med(et, "extrapolated", "fraction_measured")
        torch_each_s = med(et, "extrapolated", "seconds")
        torch_each_anon = med(et, "measured", "peak_anon") - med(et, "measured", "extra_anon") + \
            med(et, "extrapolated", "extra_anon")
        torch_cell = (f"≈{secs(torch_each_s)}; anon ≈{gb(torch_each_anon)} (extrapolated from "
                      f"{fraction * 100:.0f} % of the entries: {spread(et, 'measured', 'seconds')}, anon "
                      f"{gb(med(et, 'measured', 'peak_anon'))})")
    else:
        torch_each_s, torch_each_anon = med(et, "measured", "seconds"), med(et, "measured", "peak_anon")
        torch_cell = measured("each_torch")
    ours_each = out["each"]
    rows.append(["L1 50 % on each 2-D weight", torch_cell, measured("each"),
                 f"{torch_each_s / med(ours_each, 'measured', 'seconds'):.1f}× faster, "
                 f"{med(ours_each, 'measured', 'peak_anon') / torch_each_anon:.2f}× the anon memory"])
    undo, redo = med(out["undo_redo"], "undo", "seconds"), med(out["undo_redo"], "redo", "seconds")
    rows.append(["undo, then redo, the global prune", "— (torch has no undo)",
                 f"{spread(out['undo_redo'], 'undo', 'seconds')}, {spread(out['undo_redo'], 'redo', 'seconds')}",
                 f"{target(max(undo, redo) < 1)} < 1 s"])
    floor_s = med(out["disk"], "floor_s")
    export_s = med(out["export"], "measured", "seconds")
    both_s = export_s + med(out["export"], "global", "seconds")
    peak = max(med(out["export"], "global", "peak_anon"), med(out["export"], "measured", "peak_anon"))
    rows.append(["clean export to a sharded folder (after the global prune)",
                 f"floor: read once + write once {spread(out['disk'], 'floor_s')} (read "
                 f"{secs(med(out['disk'], 'read_s'))}, write+fsync {secs(med(out['disk'], 'write_s'))}, copy+fsync "
                 f"{secs(med(out['disk'], 'copy_s'))})", measured("export"),
                 f"{export_s / floor_s:.2f}× the floor"])
    rows.append(["global L1 50 % + clean sharded export", "—",
                 f"{secs(both_s)}; anon peak {gb(peak)}",
                 f"{target(both_s <= 2.5 * floor_s)} {both_s / floor_s:.2f}× the floor (≤ 2.5×), "
                 f"{target(peak <= 3 * 2**30)} anon ≤ 3 GB"])
    text = table(f"{folder.name} (bf16, {entries / 1e9:.2f}B weights)", ["plain torch / floor", "SparseGUI",
                                                                        "vs / target"], rows)
    return text, out


# -- apply, history, contention (whole processes at 125M) -------------------------------------------------------------
def apply_group(checkpoint: Path, work: Path, pairs: int) -> tuple[str, dict[str, Any]]:
    progress(f"sparsegui apply vs the plain script, {pairs} interleaved pairs")
    out = {"pairs": run_json(["-m", "benchmarks.apply", "pairs", str(checkpoint), "--pairs", str(pairs),
                              "--work", str(work)])}
    progress("cProfile of one sparsegui apply")
    out["profile"] = run_json(["-m", "benchmarks.apply", "profile", str(checkpoint), "--work", str(work)])
    p = out["pairs"]
    m, s, r = p["median"], p["spread"], p["ratio"]

    def side(name: str) -> str:
        return (f"{secs(m[name]['seconds'])} ({secs(s[name]['seconds'][0])}–{secs(s[name]['seconds'][1])}); "
                f"peak RSS {gb(m[name]['peak_rss'])}, anon {gb(m[name]['peak_anon'])}")

    rows = [[f"`sparsegui apply` of a global L1 50 % recipe vs the plain script ({len(p['pairs'])} pairs, medians)",
             side("torch"), side("ours"),
             f"time {r['seconds']:.2f}× {'✓' if r['seconds'] <= 0.15 else '✗'} (≤ 0.15×); peak RSS "
             f"{r['peak_rss']:.2f}× {'✓' if r['peak_rss'] <= 0.3 else '✗'} (≤ 0.3×); anon {r['peak_anon']:.2f}×"]]
    phases = out["profile"]["phases"]
    text = table(f"whole process, {checkpoint.stem}", ["plain torch script", "SparseGUI", "ratio / target"], rows)
    profiled = out["profile"]["profiled_phases"]
    text += "\n\n" + table("where one `sparsegui apply` spends its time (fresh process)",
                           ["seconds (timed)", "seconds (under cProfile)"],
                           [[f"{k} (on a helper thread, during the export)" if k == "summary" else k, f"{v:.2f}",
                             f"{profiled[k]:.2f}"] for k, v in phases.items()] +
                           [["total", f"{out['profile']['total_s']:.2f}", f"{out['profile']['profiled_total_s']:.2f}"]])
    return text, out


def history_group(checkpoint: Path, repeat: int, work: Path) -> tuple[str, dict[str, Any]]:
    progress("20 successive steps: SparseGUI (with undo/redo), plain torch")
    masks = {side: work / f"history-{side}-{os.getpid()}.npz" for side in ("sparsegui", "torch")}
    def job(side: str) -> Callable[[], dict[str, Any]]:
        return lambda: run_json(["-m", "benchmarks.history", side, str(checkpoint), "--masks", str(masks[side])])

    out: dict[str, Any] = {side: repeated(job(side), repeat) for side in masks}
    import numpy as np

    a, b = np.load(masks["sparsegui"]), np.load(masks["torch"])
    out["masks_differ"] = int(sum(int((a[k] != b[k]).sum()) for k in a))
    out["masks_compared"] = int(sum(a[k].size for k in a))
    for path in masks.values():
        path.unlink(missing_ok=True)
    progress("the same 20 steps in lockstep, masks compared after each")
    out["lockstep"] = run_json(["-m", "benchmarks.history", "lockstep", str(checkpoint)])
    first = out["lockstep"]["first_difference"]
    if first is None:
        agreement = "identical masks after every step"
    else:
        step = out["lockstep"]["steps"][first]
        counts = sum(s["count_differs"] for s in out["lockstep"]["steps"][: first + 1])
        agreement = (f"first difference at step {first + 1} ({step['method']}): {step['differ']:,} entries, "
                     f"{'the same' if not counts else 'a different'} number pruned in every tensor; "
                     f"after 20 steps {out['masks_differ']:,} of {out['masks_compared']:,} differ")
    ours, plain = out["sparsegui"], out["torch"]
    exact = all(r["bit_exact"] for r in ours["runs"])
    rows = [["20 steps over the 48 block matrices, 10 % each (L1, random, L2-structured, global, random-structured "
             "×4)", f"{spread(plain, 'seconds')}; anon {gb(med(plain, 'peak_anon'))}",
             f"{spread(ours, 'seconds')}; anon {gb(med(ours, 'peak_anon'))} holding the history "
             f"({gb(med(ours, 'history_mask_bytes'))} of masks)",
             f"{med(ours, 'peak_anon') / med(plain, 'peak_anon'):.2f}× the anon memory; {agreement}"],
            ["undo all 20, then redo all 20", "— (torch has no undo)",
             f"{spread(ours, 'undo_all_s')}, {spread(ours, 'redo_all_s')}",
             f"bit-exact after every undo and redo: {'✓' if exact else '✗'}"]]
    return table(checkpoint.stem, ["plain torch", "SparseGUI", ""], rows), out


def contention_group(checkpoint: Path, repeat: int) -> tuple[str, dict[str, Any]]:
    progress("global L1 with and without a competing CPU load")
    out = run_json(["-m", "benchmarks.contention", str(checkpoint), "--repeat", str(repeat)])
    m = out["median"]

    def cell(key: str) -> str:
        runs = out["runs"][key]
        return f"{secs(m[key])} ({secs(min(runs))}–{secs(max(runs))}, {len(runs)} runs)"

    rows = [["torch's default threads", cell("idle-default"), cell("loaded-default"),
             f"{out['slowdown_default']:.2f}× {'✓' if out['slowdown_default'] <= 2 else '✗'} (≤ 2×)"],
            ["`torch.set_num_threads(1)`", cell("idle-1"), cell("loaded-1"),
             f"{out['slowdown_one_thread']:.2f}× {'✓' if out['slowdown_one_thread'] <= 2 else '✗'} (≤ 2×)"]]
    return table(f"{checkpoint.stem} global L1 50 %", ["idle", "two `yes > /dev/null` running", "slowdown"],
                 rows), out


def gui_group(checkpoint: Path, repeat: int) -> tuple[str, dict[str, Any]]:
    progress(f"the app offscreen on {checkpoint.name}")
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    out = repeated(lambda: run_json(["-m", "benchmarks.gui", str(checkpoint)], env), repeat)
    rows = []
    for phase, label in (("open", "open"), ("global", "global L1 50 % over every 2-D weight"),
                         ("mask", "select the embedding until its mask is painted"), ("undo", "undo the global prune"),
                         ("export", "clean export")):
        stall = med(out, f"{phase}_stall_ms")
        rows.append([label, spread(out, f"{phase}_s"), spread(out, f"{phase}_stall_ms", fmt=lambda v: f"{v:.0f} ms"),
                     f"{'✓' if stall < 100 else '✗'} < 100 ms"])
    mask_ms = med(out, "mask_show_ms")
    rows.append([f"the {out['runs'][0]['mask_tensor']} mask on screen after selecting it", "",
                 spread(out, "mask_show_ms", fmt=lambda v: f"{v:.0f} ms"), f"{'✓' if mask_ms < 1000 else '✗'} < 1 s"])
    return table(f"the app, offscreen ({checkpoint.name}, 10 ms tick)", ["time", "longest UI stall", "target"],
                 rows), out


# -- main -------------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=[*DEFAULT_GROUPS, "all"], default="125m")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N] (the core rows only)")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "sparsegui-bench",
                        help="where the checkpoints are written (kept between runs)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each task; the median is reported")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved pairs for the apply comparison")
    parser.add_argument("--only", help="comma-separated groups: " + ", ".join(sorted({g for gs in
                                                                                      DEFAULT_GROUPS.values()
                                                                                      for g in gs})))
    parser.add_argument("--torch-layers", type=int, default=None,
                        help="time-box plain per-tensor torch to the first N blocks and extrapolate (7B: 2)")
    parser.add_argument("--no-gui", action="store_true", help="skip the GUI measurements")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = ["125m", "1b", "1b-bf16", "7b"] if args.size == "all" else [args.size]
    report: dict[str, Any] = {"device": args.device, "repeat": args.repeat}
    for size in sizes:
        groups = [g for g in (args.only.split(",") if args.only else DEFAULT_GROUPS[size])
                  if not (g == "gui" and args.no_gui)]
        report[size] = {}
        for group in groups:
            text, figures = run_group(group, size, args)
            report[size][group] = figures
            print(f"\n{text}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")


def run_group(group: str, size: str, args: argparse.Namespace) -> tuple[str, Any]:
    llama = size in ("7b", "tiny")
    if group == "scale" or (group == "gui" and llama and size == "7b"):
        folder = write_llama_folder(LLAMA_SIZES["7b" if size == "7b" else "tiny-llama"], args.work)
        layers = args.torch_layers if args.torch_layers is not None else (2 if size == "7b" else None)
        if group == "scale":
            return scale_group(folder, args.work, args.repeat, layers)
        return gui_group(folder, args.repeat)
    checkpoint = write_checkpoint(SIZES[size if size in SIZES else "125m"], args.work)
    if group == "core":
        return core_group(size, checkpoint, args.device, args.repeat)
    if group == "floor":
        return floor_group(size, checkpoint, args.repeat, args.torch_layers)
    if group == "apply":
        return apply_group(checkpoint, args.work, args.pairs)
    if group == "history":
        return history_group(checkpoint, args.repeat, args.work)
    if group == "contention":
        return contention_group(checkpoint, args.repeat)
    if group == "gui":
        return gui_group(checkpoint, args.repeat)
    if group == "diff":
        from benchmarks import diff

        return diff.group(checkpoint, args.work, args.repeat)
    raise SystemExit(f"unknown group {group!r}")


if __name__ == "__main__":
    main()
