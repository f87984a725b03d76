"""How responsive the desktop app stays on a big checkpoint (run offscreen).

``QT_QPA_PLATFORM=offscreen python -m benchmarks.gui CHECKPOINT_PATH`` opens the checkpoint in the real
:class:`~sparsegui.gui.main_window.MainWindow`, runs a global L1 50 % prune over every 2-D ``weight`` (the Linear and
Embedding weights) through the prune panel's ``apply_requested`` → controller → worker path, and measures:

- ``max_stall_ms``: the longest gap between ticks of a 1 ms timer on the UI thread, from the click until the window
  has refreshed after the prune (tree, charts, details and mask view);
- ``mask_show_ms``: from selecting ``transformer.wte.weight`` in the tree until its mask image is painted;
- ``global_prune_s`` (click to result on the UI thread) and ``open_s`` (open to the window showing the model).

Human-readable lines come first; the last line of stdout is one JSON object with those four numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QItemSelectionModel, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

SETTLE_S = 0.3  # after the UI thread has the result, keep measuring this long for deferred refreshes
TIMEOUT_S = 600.0


class StallMeter:
    """Timestamps every tick of a 1 ms precise timer on the UI thread; the largest gap is the worst stall."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(1)
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
        gaps = [b - a for a, b in zip(self.ticks, self.ticks[1:], strict=False)]
        return max(gaps, default=0.0) * 1000.0

    def worst(self, count: int = 5) -> list[float]:
        gaps = sorted((b - a for a, b in zip(self.ticks, self.ticks[1:], strict=False)), reverse=True)
        return [round(g * 1000.0, 1) for g in gaps[:count]]


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


def settle(app: QApplication, window: object, seconds: float = SETTLE_S) -> None:
    """Let deferred refreshes run: the event loop for ``seconds`` after any pending background refresh ended."""
    pending = getattr(window, "refresh_pending", None)
    idle = lambda: not (pending() if callable(pending) else False)  # noqa: E731
    wait_until(app, idle)
    end = time.perf_counter() + seconds
    wait_until(app, lambda: time.perf_counter() >= end)
    wait_until(app, idle)


def two_d_weights(model: object) -> list[str]:
    """Qualified names of every 2-D ``weight`` parameter (Linear and Embedding weights)."""
    names = []
    for module_name, module in model.named_modules():  # type: ignore[attr-defined]
        weight = module._parameters.get("weight")
        if weight is not None and weight.dim() == 2:
            names.append(f"{module_name}.weight" if module_name else "weight")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gui", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--tensor", default="transformer.wte.weight", help="the tensor whose mask is shown")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the window at the end")
    args = parser.parse_args(argv)

    from sparsegui.gui.app import configure_application

    app = configure_application()
    settings_dir = tempfile.mkdtemp(prefix="sparsegui-bench-")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)

    from sparsegui.gui import controller
    from sparsegui.gui.controller import PruneRequest
    from sparsegui.gui.main_window import MainWindow
    from sparsegui.gui.session import Selection

    def report_error(_parent: object, title: str, exc: BaseException, *_: object) -> None:
        print(f"error: {title}: {exc}", file=sys.stderr)  # a modal dialog would block the benchmark

    controller.show_error = report_error  # type: ignore[assignment]

    window = MainWindow()
    window.show()
    settle(app, window, 0.1)

    # -- open ----------------------------------------------------------------------------------------------------
    start = time.perf_counter()
    window.controller.open_path(args.checkpoint)
    wait_until(app, lambda: not window.controller.runner.busy)
    settle(app, window, 0.0)
    open_s = time.perf_counter() - start
    doc = window.session.document
    if doc.source.path is None or Path(doc.source.path).resolve() != args.checkpoint.resolve():
        print("could not open the checkpoint", file=sys.stderr)
        return 1
    total = sum(p.numel() for p in doc.model.parameters())
    print(f"opened {args.checkpoint.name}: {total:,} parameters in {open_s:.2f} s")
    settle(app, window)

    # -- global prune, as the prune panel's Apply does -----------------------------------------------------------
    targets = two_d_weights(doc.model)
    request = PruneRequest("l1_unstructured", targets, amount=0.5, global_=True)
    meter = StallMeter()
    meter.start()
    start = time.perf_counter()
    window.prune_panel.apply_requested.emit(request)
    wait_until(app, lambda: not window.controller.runner.busy)
    global_prune_s = time.perf_counter() - start
    settle(app, window)
    max_stall_ms = meter.stop()
    if not doc.history.can_undo:
        print("the global prune did not happen", file=sys.stderr)
        return 1
    print(f"global L1 50% over {len(targets)} tensors: {global_prune_s:.2f} s; "
          f"longest UI stall {max_stall_ms:.1f} ms (worst gaps {meter.worst()} ms)")

    # -- select the embedding in the tree and wait for its mask on screen -----------------------------------------
    window.tabs.setCurrentWidget(window.mask_view)
    settle(app, window, 0.2)
    tree = window.tree
    meter.start()
    start = time.perf_counter()
    row = tree.proxy.mapFromSource(tree.model.index_for(Selection("tensor", args.tensor)))
    flags = QItemSelectionModel.SelectionFlag
    tree.view.selectionModel().setCurrentIndex(row, flags.ClearAndSelect | flags.Rows)
    wait_until(app, lambda: window.mask_view.qualname == args.tensor and not window.mask_view.rendering
               and window.mask_view.rendered is not None)
    window.mask_view.graphics.grab()  # paints the scene with the new image
    mask_show_ms = (time.perf_counter() - start) * 1000.0
    print(f"mask of {args.tensor} on screen in {mask_show_ms:.1f} ms ({window.mask_view.title})")
    settle(app, window)
    print(f"longest UI stall from selecting it until every view showed it: {meter.stop():.1f} ms "
          f"(worst gaps {meter.worst()} ms)")

    # -- undo it (the views show the tensor again) ------------------------------------------------------------------
    meter.start()
    start = time.perf_counter()
    window.controller.undo()
    settle(app, window)
    print(f"undo of the global prune: {(time.perf_counter() - start) * 1000 - SETTLE_S * 1000:.0f} ms, "
          f"longest UI stall {meter.stop():.1f} ms (worst gaps {meter.worst()} ms)")
    window.controller.redo()
    settle(app, window)

    if args.screenshot is not None:
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(args.screenshot))
        print(f"screenshot: {args.screenshot}")

    window.controller.undo_stack.setClean()
    window.close()
    result = {"max_stall_ms": round(max_stall_ms, 1), "mask_show_ms": round(mask_show_ms, 1),
              "global_prune_s": round(global_prune_s, 3), "open_s": round(open_s, 3)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
