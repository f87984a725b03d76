"""Invalid operations leave the model exactly as it was: every parameter, buffer, tensor attribute and pruning hook
is compared bit for bit before and after, on models already pruned (PruningContainer hooks), on every demo and on a
model rebuilt from a file. Settings refused up front are listed in tests/test_parity.py; this file adds plugins that
misbehave, masks from files of the wrong shape, and devices that do not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.utils import prune

from sparsegui.core.document import Document
from sparsegui.core.errors import DeviceError, PruneError, SparseGUIError
from tests.helpers import assert_same_state, full_state


class RaisesAtOnce(prune.BasePruningMethod):
    """Raises before computing anything."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("plugin failed")


class ScribblesThenRaises(prune.BasePruningMethod):
    """Overwrites the tensor it was given in place, then raises: the rollback must bring the values back."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t.fill_(123.0)
        raise ValueError("scribbled and gave up")


class WrongShapeMask(prune.BasePruningMethod):
    """Returns a mask that does not fit the tensor."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        return torch.ones(3)


class ReturnsNothing(prune.BasePruningMethod):
    """Forgets to return a mask."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        return None  # type: ignore[return-value]


class Interrupted(prune.BasePruningMethod):
    """The user presses Ctrl+C inside the plugin (a BaseException, not an Exception)."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt


def _plugin(name: str) -> str:
    return f"tests.test_invalid_ops:{name}"


def pruned(doc: Document) -> Document:
    """Prune some tensors twice, so PruningContainer hooks, *_orig and *_mask are part of what must not change."""
    weights = [r.qualname for r in doc.resolve(["*.weight"]) if r.qualname.count(".") <= 2][:3]
    doc.prune("l1_unstructured", weights, amount=0.3)
    doc.prune("random_unstructured", weights[:1], amount=0.2, seed=5)
    return doc


def lenet_from_file(tmp_path: Path) -> Document:
    path = tmp_path / "lenet.safetensors"
    pruned(Document.demo("lenet")).export(path, keep_masks=True)
    return Document.open(path)


DOCS: dict[str, Callable[[Path], Document]] = {
    "lenet": lambda _: pruned(Document.demo("lenet")),
    "resnet": lambda _: pruned(Document.demo("resnet")),
    "transformer": lambda _: pruned(Document.demo("transformer")),
    "rebuilt-from-file": lenet_from_file,
}

PLUGIN_FAILURES: list[tuple[str, type[BaseException], str]] = [
    ("RaisesAtOnce", PruneError, "plugin failed"),
    ("ScribblesThenRaises", PruneError, "scribbled"),
    ("WrongShapeMask", SparseGUIError, ""),
    ("ReturnsNothing", SparseGUIError, ""),
    ("Interrupted", KeyboardInterrupt, ""),
]


@pytest.mark.parametrize(("plugin", "raised", "says"), PLUGIN_FAILURES, ids=[p[0] for p in PLUGIN_FAILURES])
@pytest.mark.parametrize("which", list(DOCS))
def test_misbehaving_plugin_changes_nothing(
    tmp_path: Path, which: str, plugin: str, raised: type[BaseException], says: str
) -> None:
    """A plugin that raises (even after scribbling on the tensor, or with KeyboardInterrupt) or returns a bad mask:
    the error propagates (a one-line PruneError for ordinary exceptions) and every tensor, buffer and hook of the
    already-pruned model is as it was; the history is unchanged."""
    doc = DOCS[which](tmp_path)
    targets = [r.qualname for r in doc.resolve(["*.weight"])][:4]
    before, labels = full_state(doc.model), list(doc.history.labels)
    with pytest.raises(raised) as info:
        doc.prune(_plugin(plugin), targets)
    if isinstance(info.value, SparseGUIError):
        assert says in str(info.value) and "\n" not in str(info.value)
    assert_same_state(before, full_state(doc.model))
    assert doc.history.labels == labels
    doc.undo()  # and the history still works on the restored model
    doc.redo()
    assert_same_state(before, full_state(doc.model))


INVALID: dict[str, Callable[[Document, str, torch.Tensor], Any]] = {
    "amount-beyond-tensor": lambda d, t, w: d.prune("l1_unstructured", [t], amount=w.numel() + 1),
    "channels-beyond-dim": lambda d, t, w: d.prune("ln_structured", [t], amount=w.shape[0] + 1, n=1, dim=0),
    "dim-that-does-not-exist": lambda d, t, w: d.prune("random_structured", [t], amount=0.5, dim=w.dim(), seed=1),
    "mask-wrong-shape": lambda d, t, w: d.prune("custom_from_mask", [t], mask=torch.ones(*w.shape, 1)),
    "mask-transposed": lambda d, t, w: d.prune("custom_from_mask", [t], mask=torch.ones(*reversed(w.shape)) if
                                               w.shape[0] != w.shape[-1] else torch.ones(1)),
    "global-count-beyond": lambda d, t, w: d.global_prune("l1_unstructured", [t], w.numel() + 1),
}


@pytest.mark.parametrize("case", list(INVALID))
@pytest.mark.parametrize("which", list(DOCS))
def test_invalid_operation_on_pruned_model_changes_nothing(tmp_path: Path, which: str, case: str) -> None:
    """An amount beyond the tensor, a dim that does not exist, a mask of the wrong shape: PruneError, one line,
    nothing changed, on every demo and on a model rebuilt from a file (already pruned)."""
    doc = DOCS[which](tmp_path)
    ref = doc.resolve(["*.weight"])[0]
    weight = getattr(doc.modules()[ref.module], ref.tensor)
    before, labels = full_state(doc.model), list(doc.history.labels)
    with pytest.raises(PruneError) as info:
        INVALID[case](doc, ref.qualname, weight)
    assert "\n" not in str(info.value)
    assert_same_state(before, full_state(doc.model))
    assert doc.history.labels == labels


@pytest.mark.parametrize("ext", ["pt", "safetensors", "h5", "npy"])
def test_mask_file_of_the_wrong_shape_changes_nothing(tmp_path: Path, ext: str) -> None:
    """A mask file whose mask does not fit the target (or has none for it): PruneError naming the tensor and both
    shapes; the pruned model unchanged."""
    source = pruned(Document.demo("lenet"))
    other = Document.demo("lenet")
    other.prune("l1_unstructured", ["fc2.weight"], amount=0.5)
    path = tmp_path / f"masks.{ext}"
    if ext == "npy":
        import numpy as np

        np.save(path, np.ones((84, 120), bool))  # fc2's shape, not fc1's
    else:
        other.export_masks(path)
    doc = source
    before, labels = full_state(doc.model), list(doc.history.labels)
    with pytest.raises(PruneError) as info:
        doc.prune("custom_from_mask", ["fc1.weight"], mask=path)
    message = str(info.value)
    assert "fc1.weight" in message and "\n" not in message
    if ext == "npy":
        assert "[84, 120]" in message and "[120, 400]" in message
    assert_same_state(before, full_state(doc.model))
    assert doc.history.labels == labels


@pytest.mark.parametrize("device", ["cuda:7", "cuda", "mps", "tpu", "cpu:x"])
def test_device_that_does_not_exist_changes_nothing(device: str) -> None:
    """Moving to a device that is not there: a one-line DeviceError; the model stays on its device, unchanged."""
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that device")
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    doc = pruned(Document.demo("lenet"))
    before = full_state(doc.model)
    with pytest.raises(DeviceError) as info:
        doc.move_to(device)
    assert "\n" not in str(info.value)
    assert doc.device.type == "cpu"
    assert_same_state(before, full_state(doc.model))
