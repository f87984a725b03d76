"""Counting zeros and norm removed stops between chunks when cancelled, keeping nothing of the interrupted pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsegui.core import energy
from sparsegui.core.bitmask import CHUNK
from sparsegui.core.document import Document
from sparsegui.core.errors import Cancelled
from sparsegui.core.loading import LoadedModel, SourceInfo
from sparsegui.core.progress import CancelToken
from sparsegui.core.stats import measure, measured


class _CancelAfter(CancelToken):
    """Cancelled at its ``n``-th check: midway through a tensor of several chunks."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.checks, self.n = 0, n

    def raise_if_cancelled(self) -> None:
        self.checks += 1
        if self.checks >= self.n:
            self.cancel()
        super().raise_if_cancelled()


def _doc(pruned: bool) -> Document:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(CHUNK // 256, 1024))  # 4 chunks
    with torch.no_grad():
        model[0].weight[0, :3] = 0.0  # zeros in the values: the count has to read the tensor
    doc = Document(LoadedModel(model, SourceInfo(format="test", key_order=list(model.state_dict()))))
    if pruned:
        doc.prune("l1_unstructured", ["0.weight"], amount=0.3)
    return doc


@pytest.mark.parametrize("pruned", [False, True])
def test_a_cancelled_count_keeps_nothing_and_a_later_one_is_exact(pruned: bool) -> None:
    doc = _doc(pruned)
    ts = doc.state.tensors["0.weight"]
    token = _CancelAfter(2)
    with pytest.raises(Cancelled):
        measure(ts, token)
    assert token.checks == 2  # stopped at the second chunk, not after the tensor
    assert not measured(ts) and ts.scanned is None and energy.known(ts) is None
    measure(ts)
    assert ts.scanned is not None
    expected = int((doc.model[0].weight == 0).sum())  # torch's own pruned tensor
    assert ts.scanned.zeros == expected


def test_a_cancelled_norm_pass_keeps_nothing() -> None:
    doc = _doc(pruned=True)
    ts = doc.state.tensors["0.weight"]
    ts.scan()  # zeros known; the norm removed still needs its own pass
    with pytest.raises(Cancelled):
        energy.measure(ts, _CancelAfter(2))
    assert energy.known(ts) is None
    assert energy.measure(ts).norm_removed > 0
