"""Undo and redo restore the exact previous tensors, buffers and hooks, bit for bit."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils import prune

from sparsegui.core.document import Document
from sparsegui.core.errors import Cancelled, PruneError
from sparsegui.core.progress import CancelToken
from tests.helpers import assert_same_state, full_state

WEIGHTS = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]
TENSORS = [*WEIGHTS, "conv1.bias", "fc3.bias"]

operation = st.one_of(
    st.tuples(st.just("random"), st.sampled_from(TENSORS), st.floats(0.0, 1.0), st.integers(0, 2**20)),
    st.tuples(st.just("l1"), st.sampled_from(TENSORS), st.floats(0.0, 1.0), st.just(0)),
    st.tuples(st.just("ln"), st.sampled_from(WEIGHTS), st.floats(0.0, 1.0), st.sampled_from([0, 1])),
    st.tuples(st.just("foobar"), st.sampled_from(TENSORS), st.just(0.0), st.just(0)),
    st.tuples(st.just("global"), st.just("*.weight"), st.floats(0.0, 1.0), st.integers(0, 2**20)),
    st.tuples(st.just("remove"), st.sampled_from(TENSORS), st.just(0.0), st.just(0)),
)


def run(doc: Document, op: tuple[str, str, float, int]) -> bool:
    """Apply one operation; returns False if the core refused it (nothing may change then)."""
    kind, target, amount, extra = op
    try:
        if kind == "random":
            doc.prune("random_unstructured", [target], amount=amount, seed=extra)
        elif kind == "l1":
            doc.prune("l1_unstructured", [target], amount=amount)
        elif kind == "ln":
            doc.prune("ln_structured", [target], amount=amount, n=2, dim=extra)
        elif kind == "foobar":
            doc.prune("foobar", [target])
        elif kind == "global":
            method = "random_unstructured" if extra % 2 else "l1_unstructured"
            doc.global_prune(method, [target], amount, seed=extra)
        else:
            doc.remove([target])
    except PruneError:
        return False
    return True


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=6))
def test_undo_any_sequence_restores_every_state(ops: list[tuple[str, str, float, int]]) -> None:
    """After any sequence, undoing step by step passes through every earlier state exactly; redo replays them."""
    doc = Document.demo("lenet")
    states = [full_state(doc.model)]
    for op in ops:
        before = full_state(doc.model)
        if run(doc, op):
            states.append(full_state(doc.model))
        else:
            assert_same_state(before, full_state(doc.model))
    for expected in reversed(states[:-1]):
        assert doc.undo() is not None
        assert_same_state(expected, full_state(doc.model))
    assert doc.undo() is None
    for expected in states[1:]:
        assert doc.redo() is not None
        assert_same_state(expected, full_state(doc.model))
    assert doc.redo() is None


def test_undo_of_remove_brings_back_reparametrization(lenet_doc: Document) -> None:
    """prune.remove is not undo; undoing a remove restores weight_orig, weight_mask and the hook."""
    lenet_doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    pruned = full_state(lenet_doc.model)
    lenet_doc.remove(["fc1.weight"])
    assert "weight_orig" not in dict(lenet_doc.model.fc1.named_parameters())
    lenet_doc.undo()
    assert_same_state(pruned, full_state(lenet_doc.model))
    assert isinstance(next(iter(lenet_doc.model.fc1._forward_pre_hooks.values())), prune.L1Unstructured)


def test_forward_after_undo_uses_restored_weights(lenet_doc: Document) -> None:
    """After undo the forward pass gives the original outputs (the hooks really are gone)."""
    x = torch.randn(2, 1, 28, 28)
    expected = lenet_doc.model(x)
    lenet_doc.prune("l1_unstructured", ["*.weight"], amount=0.9)
    assert not torch.equal(lenet_doc.model(x), expected)
    lenet_doc.undo()
    assert torch.equal(lenet_doc.model(x), expected)


def test_new_operation_after_undo_drops_redo(lenet_doc: Document) -> None:
    """A new operation after an undo discards what could have been redone."""
    lenet_doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    lenet_doc.undo()
    lenet_doc.prune("l1_unstructured", ["fc2.weight"], amount=0.5)
    assert not lenet_doc.history.can_redo
    assert lenet_doc.history.labels == ["l1_unstructured 50% on fc2.weight"]


def test_modified_flag_follows_history(lenet_doc: Document, tmp_path: Any) -> None:
    """The document is modified after an operation, clean after export, modified again after undo."""
    assert not lenet_doc.modified
    lenet_doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    assert lenet_doc.modified
    lenet_doc.export(tmp_path / "out.pt")
    assert not lenet_doc.modified
    lenet_doc.undo()
    assert lenet_doc.modified


class ExplodingMethod(prune.BasePruningMethod):
    """Fails on the third tensor it prunes (to test rollback of a multi-tensor operation)."""

    PRUNING_TYPE = "unstructured"
    calls = 0

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        if type(self).calls == 3:
            raise RuntimeError("boom")
        mask = default_mask.clone()
        mask.view(-1)[:1] = 0
        return mask


def test_failure_midway_rolls_back_every_target(lenet_doc: Document) -> None:
    """A plugin that raises on the third of five tensors leaves the model exactly as before, and no history."""
    ExplodingMethod.calls = 0
    lenet_doc.prune("l1_unstructured", ["conv1.weight"], amount=0.3)
    before = full_state(lenet_doc.model)
    with pytest.raises(PruneError, match="boom"):
        lenet_doc.prune("tests.test_history:ExplodingMethod", WEIGHTS)
    assert_same_state(before, full_state(lenet_doc.model))
    assert len(lenet_doc.history.labels) == 1


def test_cancel_midway_rolls_back(lenet_doc: Document) -> None:
    """Cancelling during a multi-tensor prune leaves the model as it was before the job."""
    before = full_state(lenet_doc.model)
    token = CancelToken()
    seen: list[str] = []

    def progress(fraction: float, text: str) -> None:
        seen.append(text)
        if len(seen) == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        lenet_doc.prune("l1_unstructured", WEIGHTS, amount=0.5, progress=progress, cancel=token)
    assert_same_state(before, full_state(lenet_doc.model))
    assert not lenet_doc.history.can_undo
