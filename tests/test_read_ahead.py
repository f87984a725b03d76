"""The export's one-piece read-ahead (core/export/ahead.py): the same items in order, errors where they happened,
the helper thread gone when the reader stops early; and a streamed export still equals torch's product."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import torch

from sparsegui.core.bitmask import BitMask
from sparsegui.core.export.ahead import read_ahead
from sparsegui.core.state import TensorState


def helpers() -> int:
    return sum(t.name == "sparsegui-ahead" for t in threading.enumerate())


def test_items_in_order() -> None:
    assert list(read_ahead(iter(range(100)))) == list(range(100))
    assert list(read_ahead(iter([]))) == []
    assert helpers() == 0


def test_an_error_is_raised_at_its_item() -> None:
    def pieces() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in read_ahead(pieces()):
            seen.append(item)
    assert seen == [1, 2]
    assert helpers() == 0


def test_stopping_early_ends_the_helper() -> None:
    produced = []

    def pieces() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    for item in read_ahead(pieces()):
        if item == 3:
            break
    assert helpers() == 0
    assert len(produced) <= 6  # at most a piece or two ahead


def test_streamed_pieces_read_ahead_equal_the_product() -> None:
    """Three buffers in the ring: a piece is not overwritten while the next is computed ahead of the writer."""
    torch.manual_seed(0)
    values = torch.randn(10_000).to(torch.bfloat16)
    keep = torch.rand(10_000) > 0.4
    mask = BitMask.from_tensor(keep)
    pieces = []
    for piece in read_ahead(TensorState._chunks(values, mask, 999)):
        time.sleep(0.002)  # the helper computes the next pieces meanwhile: a ring too small would overwrite this one
        pieces.append(piece.clone())
    assert torch.equal(torch.cat(pieces), values * keep.to(torch.bfloat16))
