"""How long each background pass keeps the UI thread waiting: ``python -m benchmarks.gil [--rows R --cols C]``.

The app's background threads (zero counting, norm removed, mask pictures, histograms) share the interpreter with
the UI thread: a single call that holds the GIL for 150 ms freezes the window for 150 ms, however short the pass is
in all. This runs each pass on a worker thread over one big tensor (by default the shape of a 7B model's token
embedding, bf16, half of it pruned) while the main thread wakes every millisecond, and prints the longest gap between
its wake-ups (what a user would feel) beside the pass's own time. No GUI needed.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import torch

from sparsegui.core import energy
from sparsegui.core.bitmask import BitMask
from sparsegui.core.render import magnitude_histogram, render_values
from sparsegui.core.state import masked_scan, scan


def longest_gap(work: Callable[[], object]) -> tuple[float, float]:
    """(seconds ``work`` took on a worker thread, longest gap in ms between the main thread's 1 ms wake-ups)."""
    done = threading.Event()
    took = [0.0]

    def run() -> None:
        start = time.perf_counter()
        work()
        took[0] = time.perf_counter() - start
        done.set()

    worker = threading.Thread(target=run)
    last = time.perf_counter()
    worst = 0.0
    worker.start()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    worker.join()
    return took[0], worst * 1000


def together(works: list[Callable[[], object]]) -> tuple[float, float]:
    """``longest_gap`` with the ``works`` running at once, each on its own thread (as the app's background threads
    do: counting, the mask picture and the histogram after an undo)."""

    def all_of() -> None:
        threads = [threading.Thread(target=work) for work in works]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return longest_gap(all_of)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32000)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    values = torch.randn(args.rows, args.cols).to(getattr(torch, args.dtype))
    keep = torch.rand(args.rows, args.cols) >= 0.5
    mask = BitMask.from_tensor(keep)
    passes: dict[str, Callable[[], object]] = {
        "zeros and NaN/Inf (scan)": lambda: scan(values),
        "zeros of the product (masked_scan)": lambda: masked_scan(values, mask, None),
        "norm removed": lambda: energy._pass(values, [mask]),
        "mask picture": lambda: render_values(values, mask, "mask"),
        "magnitude picture": lambda: render_values(values, mask, "effective"),
        "histogram + threshold": lambda: magnitude_histogram(values, mask, threshold=True),
        "unpack the whole mask": lambda: mask.numpy(),
        "pack a whole mask": lambda: BitMask.from_tensor(keep),
    }
    print(f"{args.rows}×{args.cols} {args.dtype}, half pruned; torch threads {torch.get_num_threads()}")
    print("| pass | its time | longest UI wait |")
    print("|---|---|---|")
    for name, work in passes.items():
        took, gap = longest_gap(work)
        print(f"| {name} | {took * 1000:.0f} ms | {gap:.1f} ms |")
    names = ["zeros of the product (masked_scan)", "norm removed", "magnitude picture", "histogram + threshold"]
    took, gap = together([passes[name] for name in names])
    print(f"| all at once: {', '.join(names)} | {took * 1000:.0f} ms | {gap:.1f} ms |")


if __name__ == "__main__":
    main()
