"""The app never loses work and never dies silently: autosave/restore, OOM rollback, exceptions anywhere."""

from __future__ import annotations

import contextlib
import threading

import torch
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox
from torch.nn.utils import prune

from sparsegui.core.steps import PruneStep
from sparsegui.gui.autosave import Autosaver, offer_restore, pending
from sparsegui.gui.controller import is_out_of_memory
from tests.helpers import assert_same_state, full_state


def run(window, qtbot, request: PruneStep) -> None:  # type: ignore[no-untyped-def]
    index = window.session.document.history.index
    window.controller.prune(request)
    qtbot.waitUntil(lambda: not window.session.busy and window.session.document.history.index > index, timeout=20000)


def test_autosave_after_each_operation_and_restore(window, qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each operation updates the autosave; a new start restores exactly the same masks; export clears it."""
    path = tmp_path / "auto" / "autosave.json"
    saver = Autosaver(window.controller, path)
    run(window, qtbot, PruneStep("random_unstructured", ("conv1.weight",), amount=0.3))
    run(window, qtbot, PruneStep("l1_unstructured", ("fc1.weight",), amount=0.5))
    saver.flush()
    data = pending(path).data
    assert data is not None and len(data["recipe"]["steps"]) == 2
    expected = full_state(window.session.document.model)

    window.session.document.history.mark_clean()
    window.session.replace_document(type(window.session.document).demo("lenet"))
    path.parent.mkdir(exist_ok=True)
    import json

    path.write_text(json.dumps(data))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    restored = pending(path).data
    assert restored is not None and offer_restore(window, window.controller, restored)
    qtbot.waitUntil(lambda: not window.session.busy and len(window.session.document.history.labels) == 1, timeout=20000)
    assert_same_state(expected, full_state(window.session.document.model))

    out = tmp_path / "out.pt"
    window.controller.export(out)
    qtbot.waitUntil(lambda: out.exists() and not window.session.busy)
    assert not path.exists()
    saver.discard()


def test_undoing_everything_clears_the_autosave(window, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Back at the opened state there is nothing to lose, so no autosave remains."""
    path = tmp_path / "autosave.json"
    saver = Autosaver(window.controller, path)
    run(window, qtbot, PruneStep("l1_unstructured", ("fc1.weight",), amount=0.5))
    saver.flush()
    assert path.exists()
    window.undo_action.trigger()
    assert not path.exists()


def test_corrupt_autosave_is_moved_aside(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An unreadable autosave is not used: it is moved aside (not deleted) and the problem described."""
    path = tmp_path / "autosave.json"
    path.write_text("{not json")
    found = pending(path)
    assert found.data is None and found.problem and found.moved_to is not None
    assert not path.exists() and found.moved_to.read_text() == "{not json"
    assert pending(path).problem is None  # the next start is clean


class OutOfMemoryMethod(prune.BasePruningMethod):
    """Raises what torch raises when a device runs out of memory."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_rolls_back_and_offers_the_cpu(window, qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """OOM during an operation: rolled back, and on a GPU the user is offered to run it on the CPU."""
    before = full_state(window.session.document.model)
    window.controller.prune(PruneStep("tests.gui.test_safety_gui:OutOfMemoryMethod", ("fc1.weight", "fc2.weight")))
    qtbot.waitUntil(lambda: bool(window.shown_errors), timeout=20000)
    assert "out of memory" in window.shown_errors[0].lower()
    assert_same_state(before, full_state(window.session.document.model))

    asked: list[str] = []
    doc = window.session.document
    monkeypatch.setattr(type(window.controller), "ask_cpu_retry", lambda self, exc, d: asked.append(str(d.device)))
    monkeypatch.setattr("sparsegui.core.operations.seeded", lambda _seed, _device: contextlib.nullcontext())
    doc.device = torch.device("cuda", 0)  # pretend the model lives on a GPU (seeding a GPU is patched out)
    window.controller.prune(PruneStep("tests.gui.test_safety_gui:OutOfMemoryMethod", ("fc1.weight",)))
    qtbot.waitUntil(lambda: bool(asked) and not window.session.busy, timeout=20000)
    doc.device = torch.device("cpu")
    assert asked == ["cuda:0"]
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate"
                                         " 1 bytes. out of memory"))


class _Emitter(QObject):
    fired = Signal()


def test_exceptions_in_signal_slots_and_threads_are_shown(qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An exception in a slot connected to a signal and one in a worker thread both reach the error dialog."""
    from sparsegui.gui.errors import ExceptionHandler

    shown: list[str] = []
    monkeypatch.setattr("sparsegui.gui.errors.show_error", lambda _p, _t, exc, *_a: shown.append(str(exc)))
    handler = ExceptionHandler()
    handler.install()
    try:
        emitter = _Emitter()

        def slot() -> None:
            raise KeyError("slot failure")

        emitter.fired.connect(slot)
        emitter.fired.emit()

        def worker() -> None:
            raise RuntimeError("thread failure")

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        qtbot.waitUntil(lambda: len(shown) == 2, timeout=5000)
    finally:
        handler.uninstall()
    assert "'slot failure'" in shown and "thread failure" in shown
