"""Wall time and peak memory of one piece of work, measured in the process that does it (or of a whole child
process, measured from its parent).

Memory is sampled every few milliseconds by a thread from ``/proc/<pid>/statm``: the resident set size (VmRSS:
every page in RAM, file-backed pages of memory-mapped checkpoints included) and the anonymous part of it (RssAnon =
resident − shared: the process's own allocations, which the kernel cannot drop and reread from a file). "Extra" is
a peak during the work minus the value just before it. Both sides of a comparison start from the same state, so
the extra figures are what the operation itself allocates; the peaks are what the process held at its worst.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
ANON_LIMIT = int(float(os.environ.get("SPARSEGUI_BENCH_ANON_LIMIT_GB", "17")) * 2**30)
"""A measured process whose anonymous memory passes this is stopped (the machine is shared; say so, don't swap)."""


def memory_now(pid: int | str = "self") -> tuple[int, int]:
    """``(resident, anonymous)`` bytes of a process now (Linux); elsewhere the peak RSS so far, twice."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            fields = handle.read().split()
        resident, shared = int(fields[1]) * _PAGE, int(fields[2]) * _PAGE
        return resident, resident - shared
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = peak if sys.platform == "darwin" else peak * 1024
        return peak, peak


def rss_bytes() -> int:
    """The resident set size now."""
    return memory_now()[0]


def anon_bytes() -> int:
    """The anonymous resident memory now (RssAnon)."""
    return memory_now()[1]


class OverLimit(RuntimeError):
    """The measured work used more anonymous memory than :data:`ANON_LIMIT`."""


@dataclass
class Measurement:
    seconds: float = 0.0
    extra_bytes: int = 0  # peak RSS above the RSS at the start
    extra_anon: int = 0  # peak RssAnon above the RssAnon at the start
    peak_rss: int = 0  # the process's peak VmRSS during the work
    peak_anon: int = 0  # the process's peak RssAnon during the work
    over_limit: bool = False

    def figures(self) -> dict[str, float | int | bool]:
        return asdict(self)


class Sampler:
    """A thread sampling a process's memory; ``limit``: kill it (a child) or flag it (self) when its anonymous
    memory passes that many bytes."""

    def __init__(self, pid: int | str = "self", interval: float = 0.005, limit: int = ANON_LIMIT) -> None:
        self.pid, self.interval, self.limit = pid, interval, limit
        self.peak_rss, self.peak_anon = memory_now(pid)
        self.over = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        rss, anon = memory_now(self.pid)
        self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)
        if anon > self.limit and not self.over:
            self.over = True
            if self.pid == "self":
                print(f"anonymous memory passed {self.limit / 2**30:.1f} GB: stopping", file=sys.stderr, flush=True)
                os._exit(3)
            with contextlib.suppress(OSError):
                os.kill(int(self.pid), 9)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.pid == "self":
            self._sample()


@contextmanager
def measure(interval: float = 0.002) -> Iterator[Measurement]:
    """Time the ``with`` body and record its peak RSS and RssAnon (and their rise above the values at entry)."""
    result = Measurement()
    start_rss, start_anon = memory_now()
    sampler = Sampler(interval=interval).start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        sampler.stop()
        result.peak_rss, result.peak_anon = sampler.peak_rss, sampler.peak_anon
        result.extra_bytes = max(0, sampler.peak_rss - start_rss)
        result.extra_anon = max(0, sampler.peak_anon - start_anon)


@dataclass
class ProcessRun:
    """A whole child process: wall seconds, peak VmRSS (the kernel's ``ru_maxrss``), peak RssAnon (sampled)."""

    seconds: float
    peak_rss: int
    peak_anon: int
    returncode: int
    cpu_seconds: float = 0.0  # user + system CPU time of the child
    load_before: float = 0.0  # the machine's 1-minute load average when it started (others' work shows here)
    stdout: str = ""
    stderr: str = ""
    over_limit: bool = False
    extra: dict[str, object] = field(default_factory=dict)


def run_process(argv: Sequence[str], cwd: str | None = None, env: dict[str, str] | None = None,
                interval: float = 0.005) -> ProcessRun:
    """Run ``argv`` to the end, measuring it from outside (time from spawn to exit, peak memory)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid, interval).start()
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    sampler.stop()
    for reader in readers:
        reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return ProcessRun(seconds, peak_rss, sampler.peak_anon, proc.returncode, usage.ru_utime + usage.ru_stime, load,
                      "".join(out), "".join(err), sampler.over)
