"""How responsive the desktop app stays on a big model (run offscreen).

``QT_QPA_PLATFORM=offscreen python -m benchmarks.gui CHECKPOINT`` (a checkpoint file or a Hugging Face model folder)
drives the real :class:`~sparsegui.gui.main_window.MainWindow` through its controller, as the menus do — the
controller runs each job in its worker and commits on the UI thread — and measures the longest gap between ticks of
a 10 ms timer on the UI thread (the event loop's worst latency: what a user feels as a frozen window) during:

- ``open``: ``controller.open_path`` until the window shows the model;
- ``global``: a global L1 50 % over every 2-D tensor (``controller.prune(GlobalStep(...))``) until every view has
  refreshed;
- ``mask``: selecting the embedding in the tree until its mask image is painted (also the time it took);
- ``undo``: ``controller.undo()`` until the views have refreshed (then ``redo``, not measured);
- ``export``: ``controller.export(target)`` (a model folder for a folder, the same format for a file) until done.

Background zero counting runs as in the app. Human-readable lines come first; the last line of stdout is one JSON
object: ``{phase}_s`` and ``{phase}_stall_ms`` for each phase, ``mask_show_ms``, the worst gaps of each phase.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

SETTLE_S = 0.3  # after the UI thread has the result, keep measuring this long for deferred refreshes
TIMEOUT_S = 900.0
TICK_MS = 10


class StallMeter:
    """Timestamps every tick of a precise timer on the UI thread; the largest gap is the worst stall."""

    def __init__(self, interval_ms: int = TICK_MS) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> float:
        """Stop; the longest gap in milliseconds (including the one up to now)."""
        self.timer.stop()
        self.ticks.append(time.perf_counter())
        return max(self.gaps(), default=0.0) * 1000.0

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.ticks, self.ticks[1:], strict=False)]

    def worst(self, count: int = 5) -> list[float]:
        return [round(g * 1000.0, 1) for g in sorted(self.gaps(), reverse=True)[:count]]


class StallTracer:
    """Diagnostics (``--trace-stalls``): a thread that, while the UI thread has not ticked for ``threshold`` seconds,
    samples every thread's Python stack every 5 ms; :meth:`summary` gives the commonest stacks per phase (the UI
    thread's own, and the other threads', since one of them may be holding the GIL)."""

    def __init__(self, meter: StallMeter, threshold: float = 0.04) -> None:
        self.meter, self.threshold = meter, threshold
        self.ui = threading.get_ident()
        self.phase = ""
        self.samples: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _stack(frame: Any, depth: int = 5) -> str:
        entries = traceback.extract_stack(frame)[-depth:]
        return " < ".join(f"{Path(e.filename).name}:{e.lineno} {e.name}" for e in reversed(entries))

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            ticks = self.meter.ticks
            if not self.meter.timer.isActive() or not ticks or time.perf_counter() - ticks[-1] < self.threshold:
                continue
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == self._thread.ident:
                    continue
                who = "UI" if ident == self.ui else names.get(ident, str(ident))
                self.samples[self.phase][f"[{who}] {self._stack(frame)}"] += 1

    def summary(self, top: int = 6) -> dict[str, list[tuple[int, str]]]:
        return {phase: [(n, s) for s, n in counter.most_common(top)] for phase, counter in self.samples.items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def wait_until(app: QApplication, done: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    """Run the event loop, as ``app.exec()`` would, until ``done()``; raise if it takes longer than ``timeout``."""
    if done():
        return
    loop = QEventLoop()
    end = time.perf_counter() + timeout
    expired = False

    def check() -> None:
        nonlocal expired
        expired = time.perf_counter() > end
        if expired or done():
            loop.quit()

    checker = QTimer()
    checker.setInterval(1)
    checker.timeout.connect(check)
    checker.start()
    loop.exec()
    checker.stop()
    if expired:
        raise TimeoutError("the app did not finish in time")


def settle(app: QApplication, window: Any, seconds: float = SETTLE_S) -> None:
    """Let deferred refreshes run: the event loop for ``seconds`` after any pending background refresh ended."""
    idle = lambda: not window.refresh_pending()  # noqa: E731
    wait_until(app, idle)
    end = time.perf_counter() + seconds
    wait_until(app, lambda: time.perf_counter() >= end)
    wait_until(app, idle)


def two_d_tensors(doc: Any) -> list[str]:
    """Every 2-D tensor of the document (Linear and Embedding weights), read from its state: asking for
    ``doc.model`` would put the whole model in torch's form."""
    return [n for n in doc.tensor_names() if len(doc.state.tensors[n].values.shape) == 2]


def embedding(names: list[str]) -> str:
    return next((n for n in names if "embed_tokens" in n or n.endswith("wte.weight")), names[0])


class Phases:
    """Runs each phase under the stall meter and keeps the figures."""

    def __init__(self, app: QApplication, window: Any, interval_ms: int, trace: bool = False,
                 profile: Sequence[str] = ()) -> None:
        self.app, self.window = app, window
        self.profile = set(profile)
        self.meter = StallMeter(interval_ms)
        self.figures: dict[str, Any] = {"tick_ms": interval_ms}
        self.tracer = StallTracer(self.meter) if trace else None

    def run(self, name: str, start_work: Callable[[], object], done: Callable[[], bool]) -> float:
        if self.tracer is not None:
            self.tracer.phase = name
        profiler = cProfile.Profile() if name in self.profile else None
        self.meter.start()
        if profiler is not None:
            profiler.enable()
        start = time.perf_counter()
        if start_work() is False:
            raise RuntimeError(f"{name}: the app refused to start it")
        wait_until(self.app, done)
        seconds = time.perf_counter() - start
        settle(self.app, self.window)
        stall = self.meter.stop()
        if profiler is not None:
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
            print(f"UI thread during {name} (cProfile, cumulative):\n{text.getvalue()}", file=sys.stderr)
        self.figures[f"{name}_s"] = round(seconds, 3)
        self.figures[f"{name}_stall_ms"] = round(stall, 1)
        self.figures[f"{name}_worst_ms"] = self.meter.worst()
        print(f"{name}: {seconds:.2f} s; longest UI stall {stall:.1f} ms (worst gaps {self.meter.worst()} ms)",
              flush=True)
        return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gui", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--tensor", help="the tensor whose mask is shown (default: the token embedding)")
    parser.add_argument("--tick-ms", type=int, default=TICK_MS)
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--trace-stalls", action="store_true",
                        help="sample every thread's stack while the UI thread stalls (printed to stderr)")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the window at the end")
    parser.add_argument("--without", action="append", default=[], choices=("transformers", "counting"),
                        help="diagnostics: open without transformers (the rebuilt tree), or with the background "
                             "zero counting switched off, to see what a stall comes from")
    parser.add_argument("--profile", action="append", default=[], metavar="PHASE",
                        help="diagnostics: cProfile the UI thread during PHASE (printed to stderr)")
    args = parser.parse_args(argv)
    if "transformers" in args.without:
        sys.modules["transformers"] = None  # type: ignore[assignment]

    from sparsegui.gui.app import configure_application

    app = configure_application()
    settings_dir = tempfile.mkdtemp(prefix="sparsegui-bench-")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)

    from sparsegui.core.steps import GlobalStep
    from sparsegui.gui import controller as controller_module
    from sparsegui.gui.main_window import MainWindow
    from sparsegui.gui.session import Selection

    errors: list[str] = []

    def report_error(_parent: object, title: str, exc: BaseException, *_: object) -> None:
        errors.append(f"{title}: {exc}")  # a modal dialog would block the benchmark
        print(f"error: {title}: {exc}", file=sys.stderr)

    controller_module.show_error = report_error  # type: ignore[assignment]
    if "counting" in args.without:
        from sparsegui.gui.counting import BackgroundCounter

        BackgroundCounter.restart = lambda self: None  # type: ignore[method-assign]

    from sparsegui.collector import freeze_survivors
    from sparsegui.gui.autosave import Autosaver

    window = MainWindow()
    autosaver = Autosaver(window.controller, Path(tempfile.mkdtemp(prefix="gui-autosave-")) / "autosave.json")
    window.show()
    freeze_survivors()  # as the app's start does
    settle(app, window, 0.1)
    control = window.controller
    idle = lambda: not control.runner.busy  # noqa: E731
    phases = Phases(app, window, args.tick_ms, args.trace_stalls, args.profile)

    phases.run("open", lambda: control.open_path(args.checkpoint), idle)
    doc = window.session.document
    if errors or doc.source.path is None or Path(doc.source.path).resolve() != args.checkpoint.resolve():
        print(f"could not open {args.checkpoint}", file=sys.stderr)
        return 1
    names = two_d_tensors(doc)
    total = sum(ts.numel for ts in doc.state.tensors.values())
    print(f"opened {args.checkpoint.name}: {total:,} parameters, {len(names)} 2-D tensors", flush=True)
    settle(app, window)

    phases.run("global", lambda: control.prune(GlobalStep("l1_unstructured", tuple(names), 0.5)), idle)
    if errors or not doc.history.can_undo:
        print("the global prune did not happen", file=sys.stderr)
        return 1

    tensor = args.tensor or embedding(names)
    window.tabs.setCurrentWidget(window.mask_view)
    settle(app, window, 0.2)
    view = window.mask_view
    shown = lambda: view.qualname == tensor and not view.rendering and view.rendered is not None  # noqa: E731
    phases.run("mask", lambda: window.tree.select_items([Selection("tensor", tensor)]), shown)
    view.graphics.grab()  # paints the scene with the new image
    phases.figures["mask_tensor"] = tensor
    phases.figures["mask_title"] = view.title

    phases.run("undo", control.undo, lambda: True)
    control.redo()
    settle(app, window)

    if not args.no_export:
        parent = Path(tempfile.mkdtemp(prefix="gui-export-", dir=args.checkpoint.parent))
        target = parent / (args.checkpoint.stem + "-pruned" + ("" if args.checkpoint.is_dir() else
                                                                args.checkpoint.suffix))
        try:
            phases.run("export", lambda: control.export(target), idle)
            if errors or not target.exists():
                print("the export did not happen", file=sys.stderr)
                return 1
        finally:
            shutil.rmtree(parent, ignore_errors=True)

    if args.screenshot is not None:
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(args.screenshot))
        print(f"screenshot: {args.screenshot}")

    doc.history.mark_clean()  # no "save changes?" question on close
    counter = control.counter  # let background counting finish: closing while it runs aborts the process
    wait_until(app, lambda: not counter.running and not window.refresh_pending())
    window.close()
    autosaver.discard()
    shutil.rmtree(autosaver.path.parent, ignore_errors=True)
    if phases.tracer is not None:
        phases.tracer.stop()
        for phase, stacks in phases.tracer.summary().items():
            print(f"stalls during {phase} (samples, stack innermost first):", file=sys.stderr)
            for count, stack in stacks:
                print(f"  {count:4d}  {stack}", file=sys.stderr)
    phases.figures["mask_show_ms"] = round(phases.figures["mask_s"] * 1000.0, 1)
    phases.figures["max_stall_ms"] = max(v for k, v in phases.figures.items() if k.endswith("_stall_ms"))
    print(json.dumps(phases.figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
