#!/usr/bin/env python3
"""Fuzz SparseGUI's loaders for longer than CI can: mutate valid files of every format and open them.

The only outcomes allowed are a loaded model (or mask dict) and SparseGUI's own ``LoadError``; any other exception
is a failure, and so is a hang. Before each case its description is written to ``OUT/current-case.json``, so a case
that kills the process (a crash in a C library) or hangs in C (no Python timeout reaches it; a watchdog then exits
with a traceback) is left on disk for ``--replay``. Failing cases are copied to ``OUT/failures/N/``.

    python3 scripts/fuzz_loaders.py --seconds 600                 # every format
    python3 scripts/fuzz_loaders.py --seconds 60 --format sparsegui_h5 --seed 7
    python3 scripts/fuzz_loaders.py --replay fuzz-out/current-case.json

The CI-sized version of this is tests/test_fuzz_loaders.py.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sparsegui.core.document import Document  # noqa: E402
from sparsegui.core.errors import LoadError  # noqa: E402
from sparsegui.core.loading.masks import load_masks  # noqa: E402
from tests import forge as F  # noqa: E402

MASK_KINDS = ("masks_pt", "masks_safetensors", "masks_h5", "masks_npy", "masks_npz")
FORMATS = (*F.KINDS, *MASK_KINDS)


def build_mask_files(folder: Path) -> dict[str, dict[str, bytes]]:
    """A valid mask file of every format the mask loader reads."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["conv1.weight", "fc3.weight"], amount=0.5)
    for ext in ("pt", "safetensors", "h5"):
        doc.export_masks(folder / f"masks.{ext}")
    np.save(folder / "masks.npy", np.ones((6, 1, 3, 3), bool))
    np.savez(folder / "masks.npz", **{"conv1.weight": np.ones((6, 1, 3, 3), bool)})
    return {f"masks_{ext}": {f"masks.{ext}": (folder / f"masks.{ext}").read_bytes()}
            for ext in ("pt", "safetensors", "h5", "npy", "npz")}


def build_corpus(folder: Path) -> F.Corpus:
    corpus = F.Corpus.build(folder / "models")
    corpus.files.update(build_mask_files(folder / "masks"))
    return corpus


def targets(corpus: F.Corpus, kind: str) -> list[str]:
    return ["raw"] if kind in MASK_KINDS else corpus.targets(kind)


def outcome(path: Path, kind: str, seconds: float) -> str:
    """``"loaded"`` or ``"LoadError"``; anything else propagates (a hang in Python raises ``forge.Hang``)."""
    if kind not in MASK_KINDS:
        return F.load_outcome(path, seconds)
    with F.time_bound(seconds):
        try:
            masks = load_masks(path)
        except LoadError as exc:
            assert str(exc) and "\n" not in str(exc), repr(str(exc))
            return "LoadError"
        for mask in masks.values():
            mask.reshape(-1).sum()
    return "loaded"


def run_case(corpus: F.Corpus, folder: Path, case: dict[str, object], seconds: float) -> str:
    kind, target = str(case["kind"]), str(case["target"])
    ops = [tuple(op) for op in case["ops"]]  # type: ignore[attr-defined]
    path = corpus.write(folder, kind, target, ops)  # type: ignore[arg-type]
    return outcome(path, kind, seconds)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (default 60)")
    parser.add_argument("--format", default="all", choices=("all", *FORMATS), help="which format to mutate")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--case-timeout", type=float, default=30.0, help="seconds one load may take (default 30)")
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"), help="where cases and failures go")
    parser.add_argument("--replay", type=Path, help="run one case from a saved JSON description and show its result")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.simplefilter("ignore")  # torch warns about every odd pickle protocol it meets
    seed = args.seed if args.seed is not None else int(time.time())
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sparsegui-fuzz-"))
    try:
        corpus = build_corpus(work / "corpus")
        if args.replay:
            case = json.loads(args.replay.read_text())
            try:
                print(run_case(corpus, work / "replay", case, args.case_timeout))
            except Exception:
                traceback.print_exc()
                return 1
            return 0
        return fuzz(args, corpus, work, seed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fuzz(args: argparse.Namespace, corpus: F.Corpus, work: Path, seed: int) -> int:
    rng = random.Random(seed)
    kinds = FORMATS if args.format == "all" else (args.format,)
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    failures = 0
    current = args.out / "current-case.json"
    deadline = time.monotonic() + args.seconds
    print(f"fuzzing {', '.join(kinds)} for {args.seconds:g} s (seed {seed})", flush=True)
    number = 0
    while time.monotonic() < deadline:
        kind = rng.choice(kinds)
        case = {"kind": kind, "target": rng.choice(targets(corpus, kind)), "ops": F.random_ops(rng)}
        current.write_text(json.dumps(case))
        folder = work / "case"
        # a hang in C, where no Python timeout reaches: exit with a traceback, the case stays on disk
        faulthandler.dump_traceback_later(args.case_timeout * 2, exit=True, file=sys.__stderr__)
        try:
            result = run_case(corpus, folder, case, args.case_timeout)
        except Exception as exc:
            result = "FAILED"
            failures += 1
            kept = args.out / "failures" / f"{seed}-{number}"
            shutil.copytree(folder, kept, dirs_exist_ok=True)
            (kept / "case.json").write_text(json.dumps(case))
            (kept / "error.txt").write_text("".join(traceback.format_exception(exc)))
            print(f"FAILED {kind} {case['target']} {case['ops']}: {type(exc).__name__}: {exc}", flush=True)
        finally:
            faulthandler.cancel_dump_traceback_later()
        counts[(kind, result)] += 1
        shutil.rmtree(folder, ignore_errors=True)
        number += 1
    current.unlink(missing_ok=True)
    for kind in kinds:
        line = ", ".join(f"{counts[(kind, r)]} {r}" for r in ("loaded", "LoadError", "FAILED") if counts[(kind, r)])
        print(f"{kind:18} {line}")
    print(f"{number} cases, {failures} failure(s)" + (f"; see {args.out / 'failures'}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
