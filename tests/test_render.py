"""Tensor pictures: layouts keep a tensor's structure, big tensors shrink by exact block averages, and every
displayed pixel maps back to the tensor entry it shows."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core.render import (
    block_counts,
    block_sums,
    make_layout,
    pruning_threshold,
    render_tensor,
    render_values,
)


@pytest.mark.parametrize(
    ("shape", "kind", "rows", "cols"),
    [
        ((), "scalar", 1, 1),
        ((7,), "strip", 1, 7),
        ((3, 5), "matrix", 3, 5),
        ((4, 2, 3), "conv1d", 4, 6),
        ((2, 3, 2, 2), "conv-grid", 2 * 3 - 1, 3 * 3 - 1),
        ((2, 3, 2, 2, 2), "flattened", 2, 24),
        ((8, 4, 1, 1), "conv-grid", 8, 4),
    ],
)
def test_layout_shapes(shape: tuple[int, ...], kind: str, rows: int, cols: int) -> None:
    """Each rank gets its layout; conv tiles are separated by a one-pixel gap unless kernels are 1×1."""
    rendered = render_values(torch.randn(shape), mode="effective")
    assert rendered.layout.kind == kind
    assert rendered.image.shape == (rows, cols)
    assert rendered.image.dtype == np.float32


def test_conv_grid_without_gaps_when_it_would_not_fit() -> None:
    """A conv grid too large for the bounds drops the gaps before anything is downsampled."""
    layout = make_layout((16, 6, 3, 3), max_rows=50)
    assert (layout.rows, layout.cols, layout.gap) == (48, 18, 0)
    assert make_layout((16, 6, 3, 3), gaps=False).gap == 0
    big = make_layout((512, 512, 3, 3))  # gapped it would fit 2048², but gaps that dense alias on screen
    assert (big.rows, big.cols, big.gap) == (1536, 1536, 0)


@pytest.mark.parametrize("gaps", [True, False])
def test_conv_grid_places_a_known_kernel(gaps: bool) -> None:
    """Kernel (out=1, in=2) lands in tile row 1, tile column 2, upright; gaps between tiles are NaN."""
    weight = torch.zeros(3, 4, 3, 3)
    kernel = torch.arange(1.0, 10.0).reshape(3, 3)
    weight[1, 2] = kernel
    rendered = render_values(weight, mode="effective", gaps=gaps)
    pitch = 4 if gaps else 3
    top, left = 1 * pitch, 2 * pitch
    np.testing.assert_array_equal(rendered.image[top : top + 3, left : left + 3], kernel.numpy())
    assert np.nansum(rendered.image) == kernel.sum().item()
    if gaps:
        assert np.isnan(rendered.image[3, :]).all() and np.isnan(rendered.image[:, 3]).all()
        assert rendered.probe(3, 0) is None
    else:
        assert not np.isnan(rendered.image).any()


def reference_block_mean(picture: np.ndarray, rs: int, cs: int) -> np.ndarray:
    """Zero-pad to whole blocks, reshape, sum, divide by the real pixel count of each block."""
    rows, cols = picture.shape
    nr, nc = math.ceil(rows / rs), math.ceil(cols / cs)
    padded = np.zeros((nr * rs, nc * cs))
    ones = np.zeros_like(padded)
    padded[:rows, :cols] = picture
    ones[:rows, :cols] = 1
    sums = padded.reshape(nr, rs, nc, cs).sum(axis=(1, 3))
    return sums / ones.reshape(nr, rs, nc, cs).sum(axis=(1, 3))


def test_density_downsampling_is_exact_on_a_small_example() -> None:
    """A 4×6 mask shown in 2×3 pixels: each pixel is the fraction kept in its 2×2 block."""
    mask = torch.tensor(
        [
            [1, 1, 0, 0, 1, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 0, 1, 1, 1, 1],
            [0, 0, 1, 0, 1, 1],
        ],
        dtype=torch.float32,
    )
    rendered = render_values(torch.randn(4, 6), mask, "mask", max_rows=2, max_cols=3)
    assert (rendered.row_step, rendered.col_step) == (2, 2)
    np.testing.assert_array_equal(rendered.image, [[1.0, 0.0, 0.25], [0.25, 0.75, 1.0]])
    assert rendered.levels == (0.0, 1.0)


def test_uneven_blocks_average_over_their_real_size() -> None:
    """Edge blocks smaller than the step are averaged over the pixels they hold, not the padding."""
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(7, 11, generator=gen)
    mask = (torch.rand(7, 11, generator=gen) > 0.4).float()
    dens = render_values(values, mask, "mask", max_rows=3, max_cols=4)
    assert (dens.row_step, dens.col_step) == (3, 3)
    np.testing.assert_allclose(dens.image, reference_block_mean(mask.numpy(), 3, 3), rtol=1e-6)
    mag = render_values(values, mask, "magnitude", max_rows=3, max_cols=4)
    np.testing.assert_allclose(mag.image, reference_block_mean(np.abs(values.numpy()), 3, 3), rtol=1e-5)
    eff = render_values(values, mask, "effective", max_rows=3, max_cols=4)
    np.testing.assert_allclose(eff.image, reference_block_mean(np.abs((values * mask).numpy()), 3, 3), rtol=1e-5)


@pytest.mark.parametrize(("rs", "cs"), [(1, 1), (2, 1), (1, 3), (4, 5), (7, 2)])
def test_block_sums_match_padded_reshape(rs: int, cs: int) -> None:
    picture = np.random.default_rng(rs * 10 + cs).random((13, 17))
    sums = block_sums(picture, rs, cs, np.float64)
    expected = reference_block_mean(picture, rs, cs) * block_counts(13, 17, rs, cs)
    np.testing.assert_allclose(sums, expected)


def test_modes() -> None:
    """mask: 1 kept / 0 pruned (all ones when unpruned); magnitude: |weight_orig|; effective: orig × mask."""
    layer = nn.Linear(6, 4)
    assert (render_tensor(layer, "weight", "mask").image == 1).all()
    prune.l1_unstructured(layer, "weight", amount=0.5)
    mask = layer.weight_mask.numpy()
    orig = layer.weight_orig.detach().numpy()
    np.testing.assert_array_equal(render_tensor(layer, "weight", "mask").image, mask)
    np.testing.assert_array_equal(render_tensor(layer, "weight", "magnitude").image, np.abs(orig))
    effective = render_tensor(layer, "weight", "effective")
    np.testing.assert_array_equal(effective.image, orig * mask)
    assert effective.signed and effective.levels[0] == -effective.levels[1]
    np.testing.assert_array_equal(render_tensor(layer, "weight_orig", "mask").image, mask)
    np.testing.assert_array_equal(render_tensor(layer, "weight_mask", "effective").image, mask)
    with pytest.raises(ValueError, match="unknown render mode"):
        render_tensor(layer, "weight", "colourful")


def test_meta_tensor_is_refused() -> None:
    with pytest.raises(ValueError, match="meta"):
        render_values(torch.empty(3, 3, device="meta"))


def test_index_mapping() -> None:
    """Every displayed pixel maps back to the tensor index whose value it shows."""
    weight = torch.randn(5, 3, 2, 4)
    rendered = render_values(weight, mode="effective")
    seen = set()
    for row in range(rendered.image.shape[0]):
        for col in range(rendered.image.shape[1]):
            probe = rendered.probe(row, col)
            if probe is None:
                assert np.isnan(rendered.image[row, col])
                continue
            assert probe.exact
            assert probe.value == pytest.approx(weight[probe.index].item())
            assert rendered.image[row, col] == pytest.approx(weight[probe.index].item())
            seen.add(probe.index)
    assert len(seen) == weight.numel()
    assert rendered.probe(-1, 0) is None and rendered.probe(0, 10_000) is None

    flat = render_values(torch.arange(24.0).reshape(2, 3, 2, 2, 1), mode="effective")
    probe = flat.probe(1, 5)
    assert probe is not None and probe.index == (1, 1, 0, 1, 0) and probe.value == 17.0
    assert render_values(torch.tensor(3.0), mode="effective").probe(0, 0).index == ()  # type: ignore[union-attr]

    mask = torch.zeros(10, 10)
    mask[4:6, 8:10] = 1
    small = render_values(torch.randn(10, 10), mask, "mask", max_rows=5, max_cols=5)
    probe = small.probe(2, 4)
    assert probe is not None and not probe.exact
    assert probe.index == (4, 8) and probe.rows == range(4, 6) and probe.cols == range(8, 10)
    assert probe.value == 1.0


def test_gpt2_embedding_downsamples_within_bounds() -> None:
    """A 50257×768 mask becomes at most 2048×2048 pixels of exact block densities, quickly."""
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(50257, 768, generator=gen)
    mask = (torch.rand(50257, 768, generator=gen) > 0.3).float()
    start = time.perf_counter()
    rendered = render_values(values, mask, "mask")
    elapsed = time.perf_counter() - start
    rows, cols = rendered.image.shape
    assert rows <= 2048 and cols <= 2048
    assert (rows, cols) == (math.ceil(50257 / 25), 768) and (rendered.row_step, rendered.col_step) == (25, 1)
    assert rendered.image.mean() == pytest.approx(mask.mean().item(), abs=1e-3)
    np.testing.assert_allclose(rendered.image[0, :5], mask[:25, :5].mean(dim=0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(rendered.image[-1, :5], mask[-7:, :5].mean(dim=0).numpy(), rtol=1e-6)
    assert elapsed < 2.0
    small = render_values(values, mask, "magnitude", max_rows=512, max_cols=256)
    assert small.image.shape == (math.ceil(50257 / 99), 256)
    assert not np.isnan(small.image).any()


def test_pruning_threshold() -> None:
    """The largest |orig| among pruned entries: every kept entry is at least as large (for magnitude pruning)."""
    layer = nn.Linear(20, 10)
    assert pruning_threshold(layer, "weight") is None
    prune.l1_unstructured(layer, "weight", amount=0)
    assert pruning_threshold(layer, "weight") is None
    prune.l1_unstructured(layer, "weight", amount=0.4)
    threshold = pruning_threshold(layer, "weight")
    orig, mask = layer.weight_orig.detach().abs(), layer.weight_mask
    assert threshold == pytest.approx(orig[mask == 0].max().item())
    assert (orig[mask == 1] >= threshold).all()
    assert pruning_threshold(layer, "bias") is None
