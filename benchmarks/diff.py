"""Two checkpoints compared tensor by tensor: ``python -m benchmarks.diff SIDE A B``.

- ``prepare A B``: write ``B``, a global L1 50 % over ``A``'s 2-D weights, cleanly exported (skipped when it exists);
- ``sparsegui``: ``sparsegui diff``'s core (:func:`~sparsegui.core.diff.diff_documents`) on the two files;
- ``torch``: the plain way, both state_dicts memory-mapped (``torch.load(mmap=True)``) and each pair compared with
  ``!=`` and ``== 0`` (full-size boolean temporaries, one tensor at a time).

Printed last: one JSON object with the time and peak memory (anonymous and resident) of the comparison, the tensors
compared, and the entries that differ (both sides must agree on it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.memory import Sampler, measure


def prepare(source: Path, target: Path) -> dict[str, Any]:
    from benchmarks.scale import weights_of
    from sparsegui.core.document import Document

    if target.exists():
        return {"prepared": False}
    start = time.perf_counter()
    doc = Document.open(source)
    doc.global_prune("l1_unstructured", weights_of(doc), 0.5)
    doc.export(target)
    return {"prepared": True, "seconds": time.perf_counter() - start}


def run_sparsegui(a: Path, b: Path) -> dict[str, Any]:
    from sparsegui.core.diff import diff_documents
    from sparsegui.core.document import Document

    process = Sampler().start()
    with measure() as m:
        left, right = Document.open(a), Document.open(b)
        result = diff_documents(left, right)
    process.stop()
    rows = [t for t in result.tensors if t.status in ("same", "changed")]
    return {"seconds": m.seconds, "peak_anon": m.peak_anon, "peak_rss": m.peak_rss, "extra_anon": m.extra_anon,
            "process_peak_anon": process.peak_anon, "tensors": len(result.tensors),
            "differ": int(sum(t.changed for t in rows)), "entries": int(sum(t.numel for t in rows))}


def run_torch(a: Path, b: Path) -> dict[str, Any]:
    import torch

    process = Sampler().start()
    with measure() as m:
        left = torch.load(a, mmap=True, weights_only=True)
        right = torch.load(b, mmap=True, weights_only=True)
        differ = entries = 0
        for key, x in left.items():
            y = right.get(key)
            if y is None or y.shape != x.shape:
                continue
            differ += int((x != y).sum())
            entries += x.numel()
            int(((x == 0) & (y == 0)).sum())  # the zeros both share, as the diff reports
    process.stop()
    return {"seconds": m.seconds, "peak_anon": m.peak_anon, "peak_rss": m.peak_rss, "extra_anon": m.extra_anon,
            "process_peak_anon": process.peak_anon, "tensors": len(left), "differ": differ, "entries": entries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=("prepare", "sparsegui", "torch"))
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    work = {"prepare": prepare, "sparsegui": run_sparsegui, "torch": run_torch}[args.side]
    print(json.dumps(work(args.a, args.b)))


if __name__ == "__main__":
    main()


def group(checkpoint: Path, work: Path, repeat: int) -> tuple[str, dict[str, Any]]:
    """The runner's ``diff`` group: ``checkpoint`` against its global L1 50 % export, both ways."""
    from benchmarks.report import gb, med, progress, repeated, run_json, spread, table

    pruned = work / f"{checkpoint.stem}-global50{checkpoint.suffix}"
    progress(f"diff {checkpoint.name} against its global L1 50 % export (written once)")
    run_json(["-m", "benchmarks.diff", "prepare", str(checkpoint), str(pruned)])

    def side(name: str) -> dict[str, Any]:
        return repeated(lambda: run_json(["-m", "benchmarks.diff", name, str(checkpoint), str(pruned)]), repeat)

    def cell(r: dict[str, Any]) -> str:
        return f"{spread(r, 'seconds')}; anon {gb(med(r, 'peak_anon'))}, RSS {gb(med(r, 'peak_rss'))}"

    out = {"sparsegui": side("sparsegui"), "torch": side("torch")}
    ours, plain = out["sparsegui"], out["torch"]
    agree = med(ours, "differ") == med(plain, "differ")
    rows = [[f"compare every tensor with its global L1 50 % export ({med(ours, 'entries') / 1e9:.2f}B entries)",
             cell(plain), cell(ours),
             f"{med(ours, 'peak_anon') / med(plain, 'peak_anon'):.2f}× the anon memory; "
             f"{int(med(ours, 'differ')):,} entries differ ({'both agree' if agree else 'the two disagree'})"]]
    return table(checkpoint.stem, ["plain torch (mmap, `!=`)", "`sparsegui diff`", ""], rows), out
