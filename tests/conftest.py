"""Shared fixtures. Qt runs offscreen in every test."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from sparsegui.core.document import Document


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def lenet_doc() -> Document:
    """A fresh document on the tutorial's LeNet demo (fixed weights)."""
    return Document.demo("lenet")
