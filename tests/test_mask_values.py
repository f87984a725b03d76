"""Values torch would misuse: masks holding anything but 0 and 1 (sparsegui/core/maskvalues.py) and norm orders
such as NaN (sparsegui/core/amounts.py: check_n)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparsegui.core import maskvalues
from sparsegui.core.amounts import MAX_NORM_ORDER, check_n
from sparsegui.core.document import Document
from sparsegui.core.errors import PruneError
from sparsegui.core.maskvalues import check_binary_mask

DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int32, torch.int64, torch.float16, torch.bfloat16,
          torch.float32, torch.float64]
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d).removeprefix("torch.") for d in DTYPES])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2, 2), ()], ids=["1d", "2d", "4d", "scalar"])
def test_zeros_and_ones_pass_in_every_dtype(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    mask = (torch.arange(max(1, math.prod(shape))).reshape(shape) % 2).to(dtype)
    before = mask.clone()
    check_binary_mask("fc1.weight", mask)
    check_binary_mask("fc1.weight", mask.transpose(0, -1) if mask.dim() > 1 else mask)  # non-contiguous
    assert torch.equal(mask, before)


BAD = [(0.5, FLOATS), (2, DTYPES[1:]), (-1, [torch.int8, torch.int32, torch.int64, *FLOATS]),
       (math.nan, FLOATS), (math.inf, FLOATS), (-math.inf, FLOATS), (1e-3, [torch.float32, torch.float64]),
       (255, [torch.uint8, torch.int32])]
CASES = [pytest.param(v, d, id=f"{v}-{str(d).removeprefix('torch.')}") for v, ds in BAD for d in ds]


@pytest.mark.parametrize(("value", "dtype"), CASES)
def test_other_values_are_refused_naming_tensor_and_value(value: float, dtype: torch.dtype) -> None:
    """One bad entry among 0s and 1s: PruneError naming the tensor, the value and its position."""
    mask = torch.ones(4, 5, dtype=dtype)
    mask[0, 1] = 0
    mask[2, 3] = value
    with pytest.raises(PruneError) as info:
        check_binary_mask("layer.0.weight", mask)
    text = str(info.value)
    assert "layer.0.weight" in text and "[2, 3]" in text and "\n" not in text, text
    shown = mask[2, 3].item()
    assert (str(shown) if math.isnan(shown) or math.isinf(shown) else repr(shown)) in text, text


def test_first_bad_value_found_beyond_the_first_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check reads in chunks; a bad value in a later chunk is still found, at its real position."""
    monkeypatch.setattr(maskvalues, "CHUNK", 16)
    mask = torch.ones(10, 10)
    mask[9, 7] = 0.25
    with pytest.raises(PruneError, match=r"0\.25 at \[9, 7\]"):
        check_binary_mask("w", mask)
    check_binary_mask("w", torch.ones(10, 10))


def test_non_tensors_and_odd_layouts_are_refused() -> None:
    for bad in (np.ones(3), [1, 0], torch.ones(2, 2).to_sparse(), torch.ones(2, dtype=torch.complex64),
                torch.empty(3, device="meta")):
        with pytest.raises(PruneError, match="mask for w"):
            check_binary_mask("w", bad)  # type: ignore[arg-type]


def test_empty_mask_passes() -> None:
    check_binary_mask("w", torch.empty(0, 5))


# -- norm orders ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [math.nan, "nan", "NaN", np.float32("nan"), 0, -1, -2.5, 0.5, 1e-300, 9,
                               MAX_NORM_ORDER + 0.01, 1e308, 10**30, -(10**400), "2", "", "inf ", "infinity",
                               True, None, [2], {"p": 2}, 2j])
def test_check_n_refuses(n: object) -> None:
    with pytest.raises(PruneError) as info:
        check_n(n)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize(("n", "expected"), [(1, 1), (2, 2), (MAX_NORM_ORDER, MAX_NORM_ORDER), (1.5, 1.5),
                                             (np.int64(3), 3), ("inf", math.inf), ("-inf", -math.inf),
                                             (math.inf, math.inf), (-math.inf, -math.inf), ("fro", "fro"),
                                             ("nuc", "nuc")])
def test_check_n_accepts(n: object, expected: object) -> None:
    got = check_n(n)
    assert got == expected and type(got) is type(expected)


def test_nan_norm_order_is_refused_by_prune(lenet_doc: Document) -> None:
    """Through the document: n=NaN is refused before anything changes (torch would rank channels arbitrarily)."""
    before = lenet_doc.model.fc1.weight.clone()
    with pytest.raises(PruneError, match="nan"):
        lenet_doc.prune("ln_structured", ["fc1.weight"], amount=0.5, n=math.nan, dim=0)
    assert torch.equal(lenet_doc.model.fc1.weight, before) and not lenet_doc.history.can_undo
