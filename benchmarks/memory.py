"""Wall time and peak extra memory of one piece of work, measured in the process that does it.

Memory is the process's resident set size (RSS) sampled every few milliseconds by a thread: "extra" is the peak
during the work minus the RSS just before it. Both sides of a comparison start from the same state (weights already
resident), so the figure is what the operation itself allocates.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """The resident set size now (Linux: /proc/self/statm; elsewhere the peak so far, a coarser stand-in)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class Measurement:
    seconds: float = 0.0
    extra_bytes: int = 0


@contextmanager
def measure(interval: float = 0.002) -> Iterator[Measurement]:
    """Time the ``with`` body and record its peak RSS above the RSS at entry."""
    result = Measurement()
    start_rss = rss_bytes()
    peak = [start_rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
        result.extra_bytes = max(0, max(peak[0], rss_bytes()) - start_rss)
