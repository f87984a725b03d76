"""The rows of the module tree: a :class:`Node` per core :class:`~sparsegui.core.rows.Row`, with the children a
view has asked for (built only then)."""

from __future__ import annotations

from typing import Any

from sparsegui.core.rows import Row, child_rows, root_row
from sparsegui.core.state import ModelState
from sparsegui.core.structure import ModelStructure
from sparsegui.gui.session import Selection

ROOT = Row("root", "", "", ("root",), children=True)


class Node:
    """One row of the tree: the core row it shows, its place among its siblings and its built children."""

    __slots__ = ("cache", "children", "data", "parent", "row")

    def __init__(self, data: Row) -> None:
        self.data = data
        self.parent: Node | None = None
        self.row = 0
        self.children: list[Node] | None = None
        self.cache: dict[str, Any] = {}

    @property
    def kind(self) -> str:
        return self.data.kind

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def local(self) -> str:
        return self.data.local

    @property
    def key(self) -> tuple[Any, ...]:
        return self.data.key

    @property
    def pruned(self) -> bool:
        return self.data.pruned

    @property
    def module_path(self) -> str:
        return self.data.module_path

    @property
    def selection(self) -> Selection:
        return Selection(self.kind, self.name, self.data.index)


def adopt(parent: Node, children: list[Node]) -> list[Node]:
    for row, child in enumerate(children):
        child.parent, child.row = parent, row
    return children


def make_children(node: Node, structure: ModelStructure, state: ModelState) -> list[Node]:
    """The rows under ``node`` in ``state``."""
    if node.kind == "root":
        return [Node(root_row(structure))]
    return [Node(row) for row in child_rows(structure, state, node.data)]


def has_children(node: Node) -> bool:
    """Whether ``node`` has rows below it, answered without building them."""
    if node.children is not None:
        return bool(node.children)
    return node.data.children
