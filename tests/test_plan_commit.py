"""Operations are planned without changing anything and committed in one swap: a plan made on a state that is no
longer current is refused, and settings the core refuses are refused before any work."""

from __future__ import annotations

import pytest

from sparsegui.core.document import Document, StaleChange
from sparsegui.core.errors import PruneError
from sparsegui.core.steps import GlobalStep, PruneStep, RemoveStep
from tests.helpers import assert_same_state, full_state


def test_planning_changes_nothing_and_commit_applies_it() -> None:
    """plan() leaves the state and the handed-out model as they are; commit() makes it one undo step."""
    doc = Document.demo("lenet")
    before, state = full_state(doc.model), doc.state
    change = doc.plan(PruneStep("l1_unstructured", ("fc1.weight",), amount=0.5))
    assert doc.state is state and not doc.history.can_undo
    assert_same_state(before, full_state(doc.model))
    doc.commit(change)
    assert doc.state is change.after and doc.history.labels == ["l1_unstructured 50% on fc1.weight"]
    assert int((doc.model.fc1.weight_mask == 0).sum()) == 24000


def test_a_plan_from_an_older_state_is_refused() -> None:
    """Undo (or any change) between plan and commit makes the plan stale: refused, nothing applied."""
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["conv1.weight"], amount=0.3)
    change = doc.plan(PruneStep("l1_unstructured", ("conv1.weight",), amount=0.3))
    doc.undo()
    state = doc.state
    with pytest.raises(StaleChange, match="changed while it was being computed"):
        doc.commit(change)
    assert doc.state is state and doc.history.index == 0 and doc.history.can_redo


def test_chained_plans_commit_as_one_step() -> None:
    """Plans made one on top of the other commit together as one undo step; a broken chain is refused."""
    doc = Document.demo("lenet")
    first = doc.plan(PruneStep("l1_unstructured", ("fc1.weight",), amount=0.5))
    second = doc.plan(RemoveStep(("fc1.weight",)), base=first.after)
    loose = doc.plan(PruneStep("l1_unstructured", ("fc2.weight",), amount=0.5))
    with pytest.raises(StaleChange):
        doc.commit_all([first, loose])
    command = doc.commit_all([first, second], "two steps")
    assert command.label == "two steps" and [s["op"] for s in command.steps] == ["prune", "remove"]
    assert [s["op"] for s in doc.recipe()["steps"]] == ["prune", "remove"]
    doc.undo()
    assert not doc.state.pruned_names() and doc.history.index == 0


@pytest.mark.parametrize(("step", "message"), [
    (PruneStep("random_unstructured", ("fc1.weight",), amount=0.5, seed=-1), r"seed=-1 must be a whole number"),
    (PruneStep("random_unstructured", ("fc1.weight",), amount=0.5, seed=2**64), r"seed=\d+ must be"),
    (GlobalStep("random_unstructured", ("*.weight",), 0.5, seed=True), r"seed=True"),  # type: ignore[arg-type]
    (PruneStep("ln_structured", ("conv1.weight",), amount=0.5, n="nuc", dim=0), r"n='nuc' needs a 3-D tensor.*4-D"),
    (PruneStep("ln_structured", ("conv1.weight",), amount=0.5, n="fro", dim=0), r"n='fro' needs a 2-D or 3-D"),
    (PruneStep("custom_from_mask", ("fc1.weight",)), r"needs a mask"),
    (PruneStep("l1_unstructured", ("fc1.weight",), amount=0.5, mask="m.pt"), r"takes no mask"),
])
def test_settings_refused_before_any_work(step: PruneStep | GlobalStep, message: str) -> None:
    doc = Document.demo("lenet")
    state = doc.state
    with pytest.raises(PruneError, match=message):
        doc.plan(step)
    assert doc.state is state
