"""Repeated blocks of a transformer checkpoint as a grid: block index × tensor role.

A transformer's tensors are mostly ``<stack>.<i>.<role>`` — ``model.layers.7.self_attn.q_proj.weight`` is role
``self_attn.q_proj.weight`` of block 7 of the stack ``model.layers``. With hundreds of tensors a bar per tensor is a
comb; a grid of roles × blocks (and a line per role along depth) shows where the zeros are. Tensors outside the
largest stack (embeddings, the final norm, the head) are listed as ``others``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sparsegui.core.stats import Count

_BLOCK = re.compile(r"^(?P<stack>.+?)\.(?P<index>\d+)\.(?P<role>.+)$")


@dataclass(frozen=True)
class BlockGrid:
    """The tensors of one stack of repeated blocks, indexed by role and block."""

    stack: str
    """The dotted path of the stack (``model.layers``)."""
    blocks: tuple[int, ...]
    """The block indices, ascending."""
    roles: tuple[str, ...]
    """The roles, in the order the first block that has them lists them."""
    cells: Mapping[tuple[int, int], str]
    """(role position, block position) → canonical tensor name; a role a block lacks has no cell."""
    others: tuple[str, ...]
    """Tensors outside the stack, in model order."""

    def tensor_at(self, role: int, block: int) -> str | None:
        return self.cells.get((role, block))

    def position(self, name: str) -> tuple[int, int] | None:
        """The (role, block) cell of tensor ``name``, None when it is not in the grid."""
        for cell, tensor in self.cells.items():
            if tensor == name:
                return cell
        return None

    def block_tensors(self, block: int) -> list[str]:
        """The tensors of block position ``block``, in role order."""
        return [self.cells[(r, block)] for r in range(len(self.roles)) if (r, block) in self.cells]

    def matrix(self, values: Mapping[str, float | None]) -> np.ndarray:
        """A roles × blocks float array of ``values`` (NaN where a block lacks the role or the value is unknown)."""
        out = np.full((len(self.roles), len(self.blocks)), np.nan)
        for (role, block), name in self.cells.items():
            value = values.get(name)
            if value is not None:
                out[role, block] = value
        return out

    def block_counts(self, counts: Mapping[str, Count]) -> list[Count]:
        """Each block's elements and zeros (zeros None while any of its tensors is not counted)."""
        out = []
        for block in range(len(self.blocks)):
            total = Count(0, 0)
            for name in self.block_tensors(block):
                total += counts[name]
            out.append(total)
        return out


def find_blocks(names: Sequence[str], min_blocks: int = 2) -> BlockGrid | None:
    """The grid of the stack holding the most tensors among ``names`` (canonical, model order), or None when no
    stack repeats at least ``min_blocks`` times."""
    stacks: dict[str, list[tuple[int, str, str]]] = {}
    for name in names:
        match = _BLOCK.match(name)
        if match:
            stacks.setdefault(match["stack"], []).append((int(match["index"]), match["role"], name))
    if not stacks:
        return None
    stack, members = max(stacks.items(), key=lambda item: len(item[1]))
    blocks = sorted({index for index, _, _ in members})
    if len(blocks) < min_blocks:
        return None
    roles: dict[str, int] = {}
    for _, role, _ in sorted(members, key=lambda m: m[0]):
        roles.setdefault(role, len(roles))
    column = {index: i for i, index in enumerate(blocks)}
    cells = {(roles[role], column[index]): name for index, role, name in members}
    inside = {name for _, _, name in members}
    return BlockGrid(stack, tuple(blocks), tuple(roles), cells, tuple(n for n in names if n not in inside))
