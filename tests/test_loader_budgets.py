"""Small files stay small: a file of a few KB (or MB) that would make loading allocate gigabytes is refused before
the memory is taken, with one line naming the budget; honest files, compressed at honest ratios, still load.

The files that would allocate are opened in a child process, whose peak memory growth is measured.
"""

from __future__ import annotations

import io
import pickle
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sparsegui.core.errors import LoadError
from sparsegui.core.export.writers import write_masks
from sparsegui.core.loading import budgets, load_model
from sparsegui.core.loading.masks import load_masks
from tests import forge as F
from tests import forge_zip as Z
from tests.helpers import assert_same_tensors

P = pickle
GROWTH_MB = 150  # what a refused load may grow a process by; every bomb below would take 500 MB or more


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    return message


def refused(path: Path, *words: str, masks: bool = False) -> str:
    before = path.read_bytes()
    with pytest.raises(LoadError) as info:
        (load_masks if masks else load_model)(path)
    message = one_line(info.value)
    assert path.name in message and all(w in message for w in words), message
    assert path.read_bytes() == before
    return message


def zip_checkpoint(path: Path, entries: dict[str, bytes], records: dict[str, bytes] | None = None) -> Path:
    return F.write_torch_zip(path, F.state_dict_stream(entries), records if records is not None else {"0": bytes(16)})


# -- overlapping views -----------------------------------------------------------------------------------------------


def parameter(tensor: bytes) -> bytes:
    """``torch._utils._rebuild_parameter(tensor, False, OrderedDict())``."""
    return (F.op_global("torch._utils", "_rebuild_parameter") + P.MARK + tensor + P.NEWFALSE
            + F.op_global("collections", "OrderedDict") + P.EMPTY_TUPLE + P.REDUCE + P.TUPLE + P.REDUCE)


HUGE_STRIDE0 = F.rebuild_tensor("0", 4, [25_000, 25_000], [0, 0])  # 16 bytes shown as 2.5 GB
VIEWS = {
    "stride-0-both-dims": {"fc.weight": HUGE_STRIDE0},
    "stride-0-one-dim": {"fc.weight": F.rebuild_tensor("0", 4, [5_000_000, 4], [0, 1])},
    "overlapping-strides": {"fc.weight": F.rebuild_tensor("0", 4, [3_000, 3_000], [1, 1], offset=0)},
    "parameter-wrapped": {"fc.weight": parameter(HUGE_STRIDE0)},
    "beside-honest-tensors": {"fc.bias": F.rebuild_tensor("0", 4, [4]), "fc.weight": HUGE_STRIDE0},
}


@pytest.mark.parametrize("case", list(VIEWS))
def test_overlapping_view_is_refused(tmp_path: Path, case: str) -> None:
    """A tensor whose logical size far exceeds the bytes its storage holds is refused, naming it."""
    entries = VIEWS[case]
    if case == "overlapping-strides":
        entries = {"fc.weight": F.rebuild_tensor("0", 5_999, [3_000, 3_000], [1, 1])}
        path = zip_checkpoint(tmp_path / "view.pt", entries, {"0": bytes(4 * 5_999)})
    else:
        path = zip_checkpoint(tmp_path / "view.pt", entries)
    refused(path, "'fc.weight'", "stride-0 or overlapping view", "refused")


def test_overlapping_view_in_a_legacy_file_and_a_training_checkpoint(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.pt"
    data = F.state_dict_stream({"fc.weight": F.rebuild_tensor("0", 4, [25_000, 25_000], [0, 0], legacy=True)})
    legacy.write_bytes(F.legacy_bytes(data, {"0": (4, bytes(16))}))
    refused(legacy, "'fc.weight'", "overlapping view")
    nested = tmp_path / "nested.pt"
    inner = P.EMPTY_DICT + F.op_str("fc.weight") + HUGE_STRIDE0 + P.SETITEM
    body = P.EMPTY_DICT + F.op_str("model") + inner + P.SETITEM
    F.write_torch_zip(nested, F.stream(body), {"0": bytes(16)})
    refused(nested, "'fc.weight'", "overlapping view")
    mask = tmp_path / "mask.pt"
    zip_checkpoint(mask, {"fc.weight": HUGE_STRIDE0})
    refused(mask, "'fc.weight'", "overlapping view", masks=True)


def test_small_overlapping_view_is_copied_and_shared_storage_kept(tmp_path: Path) -> None:
    """An ``expand``-ed buffer saved as is (a few bytes repeated) loads as an ordinary tensor with the same values;
    tensors that share a storage without overlapping (tied weights, slices) load unchanged, still sharing it."""
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {"emb.weight": base, "head.weight": base, "a.weight": base[:1], "b.weight": base[1:],
             "pos.bias": torch.arange(4.0).reshape(1, 4).expand(64, 4)}
    torch.save(state, tmp_path / "views.pt")
    model = load_model(tmp_path / "views.pt").model
    assert torch.equal(model.pos.bias, state["pos.bias"]) and model.pos.bias.stride() == (4, 1)
    storages = {name: t.untyped_storage().data_ptr() for name, t in model.state_dict().items()}
    assert storages["emb.weight"] == storages["head.weight"] == storages["a.weight"] == storages["b.weight"]
    assert_same_tensors({k: model.state_dict()[k] for k in ("emb.weight", "a.weight", "b.weight")},
                        {k: state[k] for k in ("emb.weight", "a.weight", "b.weight")})


# -- pickles that make memory out of nothing -------------------------------------------------------------------------


def call(module: str, name: str, *args: bytes) -> bytes:
    return F.op_global(module, name) + F.tup(*args) + P.REDUCE


def rebuild_from_type(levels: int) -> bytes:
    """``_rebuild_from_type_v2(_rebuild_from_type_v2, Tensor, (… bytearray, Tensor, (500M,), {}) …), {})``."""
    rebuild, tensor = F.op_global("torch._tensor", "_rebuild_from_type_v2"), F.op_global("torch", "Tensor")
    opening = [P.MARK + (rebuild if level else F.op_global("builtins", "bytearray")) + tensor
               for level in reversed(range(levels))]
    innermost = F.tup(F.op_int(500_000_000))
    return rebuild + b"".join(opening) + innermost + (P.EMPTY_DICT + P.TUPLE) * levels + P.REDUCE


BYTEARRAY = call("builtins", "bytearray", F.op_int(500_000_000))
CALLS = {
    "bytearray-of-a-size": (BYTEARRAY, "bytearray"),
    "bytearray-via-memo": (F.op_global("builtins", "bytearray") + P.BINPUT + b"\x07" + P.POP + P.BINGET + b"\x07"
                           + F.tup(F.op_int(500_000_000)) + P.REDUCE, "bytearray"),
    "bytearray-via-stack-global": (F.op_str("builtins") + F.op_str("bytearray") + P.STACK_GLOBAL
                                   + F.tup(F.op_int(500_000_000)) + P.REDUCE, "bytearray"),
    "encode-chain": (call("_codecs", "encode", call("_codecs", "encode", F.op_str("ab" * 64), F.op_str("hex_codec")),
                          F.op_str("hex_codec")), "_codecs.encode"),
    "tensor-class-call": (call("torch", "FloatTensor", F.op_int(250_000_000)), "torch.FloatTensor"),
    "storage-newobj": (F.op_global("torch.storage", "UntypedStorage") + F.tup(F.op_int(10**9)) + P.NEWOBJ,
                       "torch.storage.UntypedStorage"),
    "rebuild-from-type": (call("torch._tensor", "_rebuild_from_type_v2", F.op_global("builtins", "bytearray"),
                               F.op_global("torch", "Tensor"), F.tup(F.op_int(500_000_000)), P.EMPTY_DICT),
                          "bytearray"),
    "rebuild-from-type-twice": (rebuild_from_type(2), "bytearray"),
    "rebuild-from-type-5000-deep": (rebuild_from_type(5_000), "nests _rebuild_from_type_v2"),
}


@pytest.mark.parametrize("case", list(CALLS))
def test_allocating_call_in_the_pickle_is_refused(tmp_path: Path, case: str) -> None:
    body, says = CALLS[case]
    path = zip_checkpoint(tmp_path / "calls.pt", {"fc.weight": F.rebuild_tensor("0", 4, [4]), "extra": body})
    refused(path, says, "refused")


def test_legacy_pickle_with_an_allocating_call_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    data = F.state_dict_stream({"fc.weight": F.rebuild_tensor("0", 4, [4], legacy=True), "extra": BYTEARRAY})
    path.write_bytes(F.legacy_bytes(data, {"0": (4, bytes(16))}))
    refused(path, "bytearray", "refused")


def test_sparse_tensor_is_refused_before_torch_validates_it(tmp_path: Path) -> None:
    sparse = torch.sparse_coo_tensor(torch.tensor([[0, 2]]), torch.tensor([1.0, 2.0]), (4,))
    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": sparse}, tmp_path / "sparse.pt")
    refused(tmp_path / "sparse.pt", "sparse tensor", "refused")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_honest_values_beside_the_weights_still_load(tmp_path: Path, legacy: bool) -> None:
    """bytes, bytearray, sets and complex numbers in a training checkpoint, and a tensor with a Python attribute
    (rebuilt through _rebuild_from_type_v2), are what torch.save writes: they load."""
    weight = torch.randn(3, 4)
    weight.note = "kept"  # type: ignore[attr-defined]
    state = {"fc.weight": weight, "fc.bias": torch.randn(3)}
    checkpoint = {"model": state, "extra": {"blob": b"\x00\x01" * 50, "buf": bytearray(b"xy"), "ids": {1, 2},
                                            "z": 1 + 2j}}
    torch.save(checkpoint, tmp_path / "ckpt.pt", _use_new_zipfile_serialization=not legacy)
    assert_same_tensors(load_model(tmp_path / "ckpt.pt").model.state_dict(), state, ordered=False)


# -- compressed data: zip records, data.pkl, .npz members, HDF5 datasets ---------------------------------------------


def bomb_checkpoint(path: Path, record_bytes: int, pickle_padding: int = 0) -> Path:
    """A zip checkpoint whose data/0 (or data.pkl, padded after its STOP) inflates from zeros."""
    numel = max(record_bytes // 4, 4)
    data_pkl = F.state_dict_stream({"fc.weight": F.rebuild_tensor("0", numel, [numel])})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        if pickle_padding:
            Z.write_zeros_member(archive, "archive/data.pkl", pickle_padding, header=data_pkl)
        else:
            archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        Z.write_zeros_member(archive, "archive/data/0", numel * 4)
        archive.writestr("archive/version", "3\n")
    return path


def test_deflated_record_bomb_is_refused(bombs: dict[str, Path]) -> None:
    path = bombs["record"]
    assert path.stat().st_size < 2 * budgets.MiB
    refused(path, "'archive/data/0'", "budget", "64:1")


def test_huge_data_pkl_is_refused_before_it_is_read(bombs: dict[str, Path]) -> None:
    path = bombs["data.pkl"]
    refused(path, "data.pkl", "read for it")


def test_compressed_checkpoint_beyond_available_memory_is_refused(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A compressed checkpoint is read into memory, so it must fit; a stored one is memory-mapped and needs none."""
    state = {"fc.weight": torch.randn(256, 256)}
    torch.save(state, tmp_path / "stored.pt")
    with zipfile.ZipFile(tmp_path / "stored.pt") as src, zipfile.ZipFile(tmp_path / "deflated.pt", "w",
                                                                          zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    monkeypatch.setattr(budgets, "memory_budget", lambda: 64 * 1024)
    refused(tmp_path / "deflated.pt", "memory")
    assert_same_tensors(load_model(tmp_path / "stored.pt").model.state_dict(), state)


def npz_bomb(path: Path, entries: int) -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|b1", "fortran_order": False, "shape": (entries,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        Z.write_zeros_member(archive, "conv1.weight.npy", len(header.getvalue()) + entries, header=header.getvalue())
    return path


def test_npz_member_bomb_is_refused(bombs: dict[str, Path]) -> None:
    path = bombs["npz"]
    refused(path, "'conv1.weight.npy'", "budget", masks=True)


def test_npy_declaring_more_than_it_holds_is_refused(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**9,)})
    path = tmp_path / "mask.npy"
    path.write_bytes(header.getvalue() + bytes(64))
    refused(path, "declares", "refused", masks=True)


def test_hdf5_mostly_fill_value_is_refused(tmp_path: Path) -> None:
    """1 GiB declared, one 4 MB chunk of real data written: the rest would be fill value."""
    path = tmp_path / "fill.h5"
    with h5py.File(path, "w") as h5:
        dset = h5.create_dataset("fc/weight", shape=(16_384, 16_384), dtype="f4", chunks=(1024, 1024),
                                 compression="gzip")
        dset[:1024, :1024] = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    refused(path, "'fc.weight'", "budget")


def test_hdf5_single_huge_chunk_is_refused(bombs: dict[str, Path]) -> None:
    """Four floats in a dataset whose one chunk is 384 MiB: reading them would inflate the whole chunk."""
    path = bombs["chunk"]
    assert path.stat().st_size < 4 * budgets.MiB
    refused(path, "'fc.weight'", "budget")


def test_honestly_compressed_hdf5_and_uniform_masks_load(tmp_path: Path) -> None:
    """gzip-compressed pruned weights (a few to one) and a mask file of uniform masks (~1000 to one, small) load."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((1024, 1024), dtype=np.float32)
    weight[rng.random((1024, 1024)) < 0.9] = 0  # 90 % pruned
    with h5py.File(tmp_path / "gzip.h5", "w") as h5:
        h5.create_dataset("fc/weight", data=weight, chunks=(256, 256), compression="gzip", shuffle=True)
    assert torch.equal(load_model(tmp_path / "gzip.h5").model.fc.weight, torch.from_numpy(weight))
    masks = {"fc.weight": torch.ones(4096, 4096, dtype=torch.bool),
             "fc2.weight": torch.zeros(4096, 1024, dtype=torch.bool)}
    write_masks(tmp_path / "masks.h5", masks)
    assert_same_tensors(load_masks(tmp_path / "masks.h5"), masks, ordered=False)


def huge_chunk(path: Path, nbytes: int) -> Path:
    """One dataset of four floats whose single chunk is ``nbytes`` of zeros, gzip-compressed (written directly)."""
    packer = zlib.compressobj(1)
    block = bytes(1 << 20)
    compressed = b"".join(packer.compress(block) for _ in range(nbytes >> 20)) + packer.flush()
    with h5py.File(path, "w") as h5:
        dset = h5.create_dataset("fc/weight", shape=(4,), maxshape=(None,), dtype="f4", chunks=(nbytes // 4,),
                                 compression="gzip")
        dset.id.write_direct_chunk((0,), compressed)
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files of at most a few MB that would each take 270 MB to 2.5 GB of memory to open (compressed at level 1,
    about 230 to one, to build quickly; deflate reaches 1030 to one)."""
    folder = tmp_path_factory.mktemp("bombs")
    return {
        "record": bomb_checkpoint(folder / "bomb.pt", 384 * budgets.MiB),
        "data.pkl": bomb_checkpoint(folder / "pickle.pt", 16, pickle_padding=272 * budgets.MiB),
        "npz": npz_bomb(folder / "masks.npz", 384 * budgets.MiB),
        "chunk": huge_chunk(folder / "chunk.h5", 384 * budgets.MiB),
        "stride-0": zip_checkpoint(folder / "view.pt", {"fc.weight": HUGE_STRIDE0}),
        "bytearray": zip_checkpoint(folder / "bytearray.pt", {"fc.weight": F.rebuild_tensor("0", 4, [4]),
                                                              "extra": CALLS["bytearray-of-a-size"][0]}),
        "tensor-class": zip_checkpoint(folder / "tensor.pt", {"fc.weight": F.rebuild_tensor("0", 4, [4]),
                                                             "extra": CALLS["tensor-class-call"][0]}),
    }


def test_no_bomb_takes_memory_in_a_fresh_process(bombs: dict[str, Path]) -> None:
    """All of them opened one after another in a fresh process (NaN/Inf scan included): each is refused, and the
    process's peak memory grows by less than any one of them would take."""
    result = Z.load_in_child([("masks" if name == "npz" else "model", path) for name, path in bombs.items()])
    for name, outcome in zip(bombs, result["results"], strict=True):
        assert outcome["outcome"] == "LoadError" and bombs[name].name in outcome["message"], (name, outcome)
    assert result["growth_mb"] < GROWTH_MB, result
