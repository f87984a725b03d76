""".pt exports compute each product just before torch's writer writes it: the same file as torch.save of all the
products at once, at most two products in memory, failures surfacing as errors (never a hang)."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsegui.core.document import Document
from sparsegui.core.export import torch_out
from sparsegui.core.export.state import LazyTensors, export_tensors
from sparsegui.core.loading import LoadedModel, SourceInfo
from sparsegui.core.state import Baked, TensorState


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.body = nn.Sequential(*[nn.Linear(16, 16) for _ in range(6)])
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight  # one tensor under two keys


def _doc(dtype: torch.dtype = torch.float32) -> Document:
    torch.manual_seed(0)
    model = Tied().to(dtype)
    with torch.no_grad():  # where a product and a select differ: NaN, ±Inf, -0
        model.body[0].weight[0, :4] = torch.tensor([float("nan"), float("inf"), -0.0, -1.5])
    doc = Document(LoadedModel(model, SourceInfo(format="test", key_order=list(model.state_dict()))))
    names = ["embed.weight"] + [f"body.{i}.weight" for i in range(6)]
    doc.global_prune("l1_unstructured", names, 0.5)
    doc.prune("random_unstructured", ["body.1.bias"], amount=0.5, seed=3)
    return doc


def _tensors(doc: Document) -> LazyTensors:
    return export_tensors(doc.structure, doc.state, doc.source.key_order, doc.source.prefix)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_file_is_torch_saves_byte_for_byte(dtype: torch.dtype) -> None:
    doc = _doc(dtype)
    tensors = _tensors(doc)
    assert sum(tensors.info(k).fill is not None for k in tensors) >= 8  # the products go the just-in-time way
    ours, theirs = io.BytesIO(), io.BytesIO()
    torch_out.save(ours, tensors)
    torch.save(tensors.materialized(), theirs)
    assert ours.getvalue() == theirs.getvalue()
    loaded = torch.load(io.BytesIO(ours.getvalue()), weights_only=True)
    assert loaded["head.weight"].data_ptr() == loaded["embed.weight"].data_ptr()  # still tied
    model = doc.model  # torch's own reparametrized tensors (head.weight is embed.weight's second name)
    for key, value in loaded.items():
        if key == "head.weight":
            continue
        module, _, name = key.rpartition(".")
        reference = getattr(model.get_submodule(module), name)
        assert torch.equal(value.view(torch.uint8), reference.detach().contiguous().view(torch.uint8)), key


def test_at_most_two_products_exist_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A product is computed only after the one two places before it was written: two buffers take turns."""
    doc = _doc()
    events: list[tuple[str, int]] = []
    lock = threading.Lock()
    real_fill = TensorState.fill_effective
    counter = {"n": 0}

    def fill(self: TensorState, out: torch.Tensor) -> torch.Tensor:
        with lock:
            index = counter["n"]
            counter["n"] += 1
            events.append(("fill", index))
        return real_fill(self, out)

    real_give_back = torch_out._Products.give_back
    written = {"n": 0}

    def give_back(self: torch_out._Products) -> None:
        with lock:
            events.append(("written", written["n"]))
            written["n"] += 1
        real_give_back(self)

    monkeypatch.setattr(TensorState, "fill_effective", fill)
    monkeypatch.setattr(torch_out._Products, "give_back", give_back)
    torch_out.save(io.BytesIO(), _tensors(doc))
    assert counter["n"] == written["n"] >= 8
    for position, (kind, index) in enumerate(events):
        if kind == "fill" and index >= 2:
            assert ("written", index - 2) in events[:position], events


def test_a_failing_product_is_raised_and_the_helper_ends(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    doc = _doc()
    calls = {"n": 0}
    real_fill = TensorState.fill_effective

    def fill(self: TensorState, out: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:
            raise MemoryError("no room for the product")
        return real_fill(self, out)

    monkeypatch.setattr(TensorState, "fill_effective", fill)
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(MemoryError, match="no room"):
        torch_out.save(str(tmp_path / "out.pt"), _tensors(doc))
    assert {t.name for t in threading.enumerate()} - before == set()


def test_a_failing_write_stops_the_helper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The writer fails (a full disk) while the helper waits for a free buffer: the error comes out, no hang."""
    doc = _doc()
    real = torch_out._Writer.write_record
    calls = {"n": 0}

    def write_record(self: torch_out._Writer, name: str, data: object, size: int) -> None:
        calls["n"] += 1
        if name.startswith("data/") and calls["n"] > 6:
            raise OSError(28, "No space left on device")
        real(self, name, data, size)

    monkeypatch.setattr(torch_out._Writer, "write_record", write_record)
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(OSError, match="No space"):
        torch_out.save(str(tmp_path / "out.pt"), _tensors(doc))
    assert {t.name for t in threading.enumerate()} - before == set()


def test_nothing_to_compute_is_plain_torch_save() -> None:
    doc = Document.demo("lenet")
    tensors = _tensors(doc)
    assert all(tensors.info(k).fill is None for k in tensors)
    ours, theirs = io.BytesIO(), io.BytesIO()
    torch_out.save(ours, tensors)
    torch.save(tensors.materialized(), theirs)
    assert ours.getvalue() == theirs.getvalue()
    assert zipfile.ZipFile(ours).testzip() is None  # every record's CRC checks


def test_export_through_a_document_loads_in_torch(tmp_path: Path) -> None:
    doc = _doc()
    written = doc.export(tmp_path / "out.pt")
    loaded = torch.load(written, weights_only=True)
    assert list(loaded) == list(doc.source.key_order)
    assert int((loaded["body.0.weight"] == 0).sum()) > 0


def test_removed_pruning_is_written_just_in_time_as_torch_leaves_it() -> None:
    """After ``remove`` the product is the tensor's value: it too is computed as the writer reaches it, and the file
    holds what ``prune.remove`` leaves in torch."""
    doc = _doc()
    doc.remove(["body.0.weight", "body.2.weight"])
    doc.prune("l1_unstructured", ["body.0.weight"], amount=0.3)  # pruned again on top of a removed product
    tensors = _tensors(doc)
    assert tensors.info("body.2.weight").fill is not None
    ours, theirs = io.BytesIO(), io.BytesIO()
    torch_out.save(ours, tensors)
    torch.save(tensors.materialized(), theirs)
    assert ours.getvalue() == theirs.getvalue()
    loaded = torch.load(io.BytesIO(ours.getvalue()), weights_only=True)
    baked = doc.state.tensors["body.2.weight"].values
    assert isinstance(baked, Baked)
    before = baked.before.tensor()
    reference = before * baked.mask.as_dtype(before.dtype)  # torch's apply_mask: orig * mask, in one op
    assert torch.equal(loaded["body.2.weight"].view(torch.uint8), reference.view(torch.uint8))
    again = doc.state.tensors["body.0.weight"]
    assert again.pruning is not None and isinstance(again.values, Baked)
    first = again.values.before.tensor() * again.values.mask.as_dtype(torch.float32)
    reference = first * again.pruning.mask.as_dtype(torch.float32)
    assert torch.equal(loaded["body.0.weight"].view(torch.uint8), reference.view(torch.uint8))
