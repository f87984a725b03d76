"""HDF5 names are never merged or renamed: two datasets that map to one key are refused as ambiguous, keys holding
``/`` (legal in torch) round-trip exactly through SparseGUI's HDF5 export, keys HDF5 cannot hold apart are refused
before anything is written, and key ordering stays linear at 20,000 datasets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from sparsegui.core.document import Document
from sparsegui.core.errors import ExportError, LoadError
from sparsegui.core.export.writers import write_masks, write_state_dict
from sparsegui.core.loading import load_model
from sparsegui.core.loading.hdf5_files import load_hdf5
from sparsegui.core.loading.masks import load_masks
from sparsegui.core.loading.statedicts import ordered_keys
from tests.helpers import assert_same_state, assert_same_tensors, full_state


def plain_file(path: Path, datasets: dict[str, np.ndarray], attrs: dict[str, dict[str, str]] | None = None,
               ours: bool = False) -> Path:
    with h5py.File(path, "w") as h5:
        if ours:
            h5.attrs["sparsegui_format"] = "sparsegui-hdf5"
        for name, data in datasets.items():
            dset = h5.create_dataset(name, data=data)
            for key, value in (attrs or {}).get(name, {}).items():
                dset.attrs[key] = value
    return path


W = np.ones((2, 3), "f4")
B = np.zeros(2, "f4")
AMBIGUOUS: dict[str, tuple[dict[str, np.ndarray], dict[str, dict[str, str]], bool, str]] = {
    "group-and-dotted-root": ({"fc/weight": W, "fc.weight": W + 1}, {}, False, "fc.weight"),
    "deeper": ({"a/b/c": W, "a.b/c": W}, {}, False, "a.b.c"),
    "dot-in-the-leaf": ({"a/b.c": W, "a.b/c": W}, {}, False, "a.b.c"),
    "two-key-attributes": ({"x/weight": W, "y/weight": W}, {"x/weight": {"key": "fc.weight"},
                                                           "y/weight": {"key": "fc.weight"}}, True, "fc.weight"),
    "key-attribute-and-path": ({"fc/weight": W, "other/w": W}, {"other/w": {"key": "fc.weight"}}, True, "fc.weight"),
}


@pytest.mark.parametrize("case", list(AMBIGUOUS))
def test_datasets_mapping_to_one_key_are_refused(tmp_path: Path, case: str) -> None:
    """Refused in one line naming both datasets and the key; the file is untouched and an open model unchanged."""
    datasets, attrs, ours, key = AMBIGUOUS[case]
    path = plain_file(tmp_path / "names.h5", datasets, attrs, ours)
    before = path.read_bytes()
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.3)
    state = full_state(doc.model)
    with pytest.raises(LoadError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and "ambiguous" in message and repr(key) in message
    assert all(repr("/" + name) in message for name in datasets), message
    with pytest.raises(LoadError):
        Document.open(path)
    assert_same_state(state, full_state(doc.model))
    assert path.read_bytes() == before


def test_a_dotted_dataset_name_alone_is_not_ambiguous(tmp_path: Path) -> None:
    path = plain_file(tmp_path / "dotted.h5", {"fc.weight": W, "fc/bias": B})
    state, _ = load_hdf5(path)
    assert sorted(state) == ["fc.bias", "fc.weight"]


SLASHED = {
    "blocks/0.weight": torch.randn(3, 2),
    "blocks/0.bias": torch.randn(3),
    "blocks.0.weight": torch.randn(3, 2),  # the same path once '/' were read as '.'
    "a%2Fb.w": torch.arange(4.0),  # what '/' is escaped to, literally
    "x.y/z": torch.ones(2, dtype=torch.float16),
    "head.weight": torch.randn(2, 2).bfloat16(),
}


def test_keys_with_slashes_round_trip_exactly(tmp_path: Path) -> None:
    write_state_dict(tmp_path / "slashed.h5", SLASHED)
    state, attrs = load_hdf5(tmp_path / "slashed.h5")
    assert_same_tensors(state, SLASHED)
    assert json.loads(str(attrs["key_order"])) == list(SLASHED)


def test_mask_keys_with_slashes_round_trip(tmp_path: Path) -> None:
    masks = {"blocks/0.weight": torch.rand(3, 2) > 0.5, "blocks.0.weight": torch.rand(3, 2) > 0.5}
    write_masks(tmp_path / "masks.h5", masks)
    assert_same_tensors(load_masks(tmp_path / "masks.h5"), masks)


class Slashed(nn.Module):
    """A ModuleDict whose names hold '/' (legal for torch modules)."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({"en/fr": nn.Linear(2, 3), "en/de": nn.Linear(2, 3)})


def test_a_model_with_slashed_module_names_round_trips(tmp_path: Path) -> None:
    original = Slashed().state_dict()
    torch.save(original, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt").model.state_dict()
    write_state_dict(tmp_path / "model.h5", loaded)
    assert_same_tensors(load_model(tmp_path / "model.h5").model.state_dict(), original)


@pytest.mark.parametrize(("keys", "says"), [
    (["a.b", "a.b.c"], "'a.b' and 'a.b.c'"),
    (["a.b.c.d", "a.b"], "'a.b' and 'a.b.c.d'"),
    (["fc..weight"], "empty part"),
    ([".weight"], "empty part"),
])
def test_keys_hdf5_cannot_hold_apart_are_refused_before_writing(tmp_path: Path, keys: list[str], says: str) -> None:
    target = tmp_path / "out.h5"
    target.write_bytes(b"previous export")
    with pytest.raises(ExportError) as info:
        write_state_dict(target, {k: torch.zeros(2) for k in keys})
    assert "\n" not in str(info.value) and says in str(info.value)
    assert target.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_older_sparsegui_files_without_key_attributes_still_load(tmp_path: Path) -> None:
    state = {"conv.weight": torch.randn(2, 1, 3, 3), "fc.bias": torch.randn(4)}
    write_state_dict(tmp_path / "old.h5", state)
    with h5py.File(tmp_path / "old.h5", "a") as h5:
        h5.visititems(lambda name, obj: obj.attrs.__delitem__("key") if isinstance(obj, h5py.Dataset) else None)
    assert_same_tensors(load_hdf5(tmp_path / "old.h5")[0], state)


# -- linear in the number of keys ------------------------------------------------------------------------------------


class CountingStr(str):
    """A key that counts how often it is hashed or compared."""

    operations = 0

    def __hash__(self) -> int:
        CountingStr.operations += 1
        return str.__hash__(self)

    def __eq__(self, other: object) -> bool:
        CountingStr.operations += 1
        return str.__eq__(self, other)


def test_ordered_keys_does_work_linear_in_the_keys() -> None:
    """The ordering every loader uses hashes each key a bounded number of times (a set built inside the loop
    would hash n² times: 4 million at 2,000 keys)."""
    for n in (500, 2000):
        keys = [CountingStr(f"layer{i}.weight") for i in range(n)]
        CountingStr.operations = 0
        result = ordered_keys(keys, keys[::-1][: n // 2])
        assert result[0] == keys[-1] and len(result) == n
        assert CountingStr.operations <= 8 * n, (n, CountingStr.operations)


def timed(load: Callable[[], object]) -> float:
    start = time.process_time()
    load()
    return time.process_time() - start


def many_datasets(path: Path, n: int) -> Path:
    """A SparseGUI-format file with ``n`` datasets and a key order that reverses them."""
    keys = [f"layers.w{i}" for i in range(n)]
    data = np.zeros(2, "f4")
    with h5py.File(path, "w") as h5:
        h5.attrs["sparsegui_format"] = "sparsegui-hdf5"
        h5.attrs["key_order"] = json.dumps(keys[::-1])
        group, space = h5.create_group("layers"), h5py.h5s.create_simple((2,))
        for key in keys:  # the low-level calls write 20,000 datasets in 2 s instead of 5
            dataset = h5py.h5d.create(group.id, key.split(".")[1].encode(), h5py.h5t.IEEE_F32LE, space)
            dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, data)
    return path


def test_twenty_thousand_datasets_load_in_linear_time(tmp_path: Path) -> None:
    """20,000 datasets take about ten times what 2,000 take (CPU time, the best of two for the small file); the
    quadratic ordering took over twenty-five times."""
    small, large = many_datasets(tmp_path / "small.h5", 2_000), many_datasets(tmp_path / "large.h5", 20_000)
    small_time = min(timed(lambda: load_hdf5(small)) for _ in range(2))
    state: dict[str, torch.Tensor] = {}
    large_time = timed(lambda: state.update(load_hdf5(large)[0]))
    assert list(state)[:2] == ["layers.w19999", "layers.w19998"] and len(state) == 20_000
    assert large_time < 20 * small_time, (small_time, large_time)
