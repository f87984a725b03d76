"""The block × role grid of a transformer's tensors (core, no Qt)."""

from __future__ import annotations

import math

import pytest

from sparsegui.core.blocks import find_blocks
from sparsegui.core.document import Document
from sparsegui.core.stats import Count, Totals
from sparsegui.core.targets import model_order

LLAMA = ["model.embed_tokens.weight",
         *[f"model.layers.{i}.{role}" for i in range(3) for role in
           ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight")],
         "model.norm.weight", "lm_head.weight"]


def test_llama_names_make_a_grid_of_roles_by_blocks() -> None:
    grid = find_blocks(LLAMA)
    assert grid is not None
    assert grid.stack == "model.layers" and grid.blocks == (0, 1, 2)
    assert grid.roles == ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "mlp.down_proj.weight",
                          "input_layernorm.weight")
    assert grid.tensor_at(2, 1) == "model.layers.1.mlp.down_proj.weight"
    assert grid.position("model.layers.2.self_attn.k_proj.weight") == (1, 2)
    assert grid.others == ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight")
    assert grid.block_tensors(0) == [f"model.layers.0.{r}" for r in grid.roles]


def test_a_role_some_blocks_lack_is_a_blank_cell_and_unknown_values_are_nan() -> None:
    names = ["enc.0.a.weight", "enc.0.b.weight", "enc.1.a.weight", "enc.2.a.weight", "enc.2.b.weight"]
    grid = find_blocks(names)
    assert grid is not None and grid.tensor_at(1, 1) is None
    matrix = grid.matrix({"enc.0.a.weight": 0.5, "enc.0.b.weight": None, "enc.1.a.weight": 0.25,
                          "enc.2.a.weight": 0.0, "enc.2.b.weight": 1.0})
    assert matrix.shape == (2, 3)
    assert matrix[0].tolist() == [0.5, 0.25, 0.0]
    assert math.isnan(matrix[1, 0]) and math.isnan(matrix[1, 1]) and matrix[1, 2] == 1.0


def test_the_largest_stack_wins_and_nested_indices_stay_in_the_role() -> None:
    names = ["encoder.block.0.w", "encoder.block.1.w",
             *[f"decoder.block.{i}.experts.{e}.w1" for i in range(2) for e in range(3)]]
    grid = find_blocks(names)
    assert grid is not None and grid.stack == "decoder.block"
    assert grid.roles == ("experts.0.w1", "experts.1.w1", "experts.2.w1")
    assert grid.others == ("encoder.block.0.w", "encoder.block.1.w")


@pytest.mark.parametrize("names", [[], ["fc1.weight", "fc2.weight"], ["layers.0.w", "layers.0.b", "head.w"]])
def test_no_grid_without_a_stack_repeated_twice(names: list[str]) -> None:
    assert find_blocks(names) is None


def test_block_counts_sum_each_block_and_stay_unknown_until_counted() -> None:
    grid = find_blocks(["h.0.a", "h.0.b", "h.1.a"])
    assert grid is not None
    counts = {"h.0.a": Count(10, 5), "h.0.b": Count(30, 0), "h.1.a": Count(10, None)}
    first, second = grid.block_counts(counts)
    assert (first.numel, first.zeros) == (40, 5) and second.zeros is None


def test_the_transformer_demo_has_its_layers_as_blocks() -> None:
    doc = Document.demo("transformer")
    doc.prune("l1_unstructured", ["*.linear1.weight"], amount=0.5)
    names = model_order(doc.structure, doc.state)
    grid = find_blocks(names)
    assert grid is not None and len(grid.blocks) >= 2
    doc.scan()
    totals = Totals(doc.structure, doc.state)
    role = grid.roles.index("linear1.weight")
    matrix = grid.matrix({n: totals.tensor(n).sparsity for n in names})
    assert matrix[role].tolist() == pytest.approx([0.5] * len(grid.blocks))
