"""Hostile files: pickles that would run code, weights-only bypass shapes, and HDF5 files that reach outside
themselves or ask for more memory than there is. Each is refused with a one-line LoadError; nothing runs or is read.

The pickle streams are written opcode by opcode (tests/forge.py); no test ever unpickles them with code allowed.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from sparsegui.cli import main
from sparsegui.core.document import Document
from sparsegui.core.errors import LoadError, TrustRequired
from sparsegui.core.loading import hdf5_files, load_model
from tests import forge as F
from tests.helpers import assert_same_state, full_state

P = pickle
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol 4:UserWarning")


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    return message


# -- payloads ------------------------------------------------------------------------------------------------------


def system(marker: Path) -> bytes:
    """``os.system("touch MARKER")``."""
    return F.op_global("os", "system") + F.tup(F.op_str(f"touch {marker}")) + P.REDUCE


def tensor(key: str = "0", legacy: bool = False) -> bytes:
    return F.rebuild_tensor(key, 4, [2, 2], legacy=legacy)


RECORDS = {"0": bytes(16)}


def zip_file(path: Path, data_pkl: bytes) -> Path:
    return F.write_torch_zip(path, data_pkl, RECORDS)


@dataclass
class Hostile:
    """A file that would run code when unpickled without restrictions, and the import it needs."""

    id: str
    wanted: str
    make: Callable[[Path, Path], Path]  # (folder, marker) -> path


def _raw(name: str, body: Callable[[Path], bytes], protocol: int = 2) -> Callable[[Path, Path], Path]:
    def make(folder: Path, marker: Path) -> Path:
        path = folder / name
        path.write_bytes(F.stream(body(marker), protocol))
        return path

    return make


def _zip(body: Callable[[Path], bytes]) -> Callable[[Path, Path], Path]:
    return lambda folder, marker: zip_file(folder / "evil.pt", F.stream(body(marker)))


def _legacy(folder: Path, marker: Path) -> Path:
    data = F.state_dict_stream({"fc.weight": tensor(legacy=True), "fc.bias": system(marker)})
    path = folder / "legacy.pt"
    path.write_bytes(F.legacy_bytes(data, {"0": (4, bytes(16))}))
    return path


def _protocol0(folder: Path, marker: Path) -> Path:
    """A protocol 0 pickle (no PROTO opcode): starts with GLOBAL."""
    path = folder / "old.pkl"
    path.write_bytes(F.op_global("os", "system") + P.MARK + F.op_str(f"touch {marker}") + P.TUPLE + P.REDUCE + P.STOP)
    return path


def _training_checkpoint(marker: Path) -> bytes:
    """``{"model": {"fc.weight": tensor}, "optimizer": {"state": <payload>}, "epoch": 3}``."""
    model = P.EMPTY_DICT + F.op_str("fc.weight") + tensor() + P.SETITEM
    optimizer = P.EMPTY_DICT + F.op_str("state") + system(marker) + P.SETITEM
    return (
        P.EMPTY_DICT
        + F.op_str("model") + model + P.SETITEM
        + F.op_str("optimizer") + optimizer + P.SETITEM
        + F.op_str("epoch") + F.op_int(3) + P.SETITEM
    )


def _stack_global_via_memo(marker: Path) -> bytes:
    """The module and function names reach STACK_GLOBAL through the memo, not as the two strings before it."""
    return (
        F.op_str("os") + P.BINPUT + b"\x00" + F.op_str("system") + P.BINPUT + b"\x01" + P.POP + P.POP
        + P.BINGET + b"\x00" + P.BINGET + b"\x01" + P.STACK_GLOBAL
        + F.tup(F.op_str(f"touch {marker}")) + P.REDUCE
    )


HOSTILE = [
    Hostile("raw-reduce", "os.system", _raw("evil.pkl", system)),
    Hostile("raw-protocol-0", "os.system", _protocol0),
    Hostile("builtins-eval", "builtins.eval", _raw("eval.pt", lambda m: F.op_global("builtins", "eval") + F.tup(
        F.op_str(f"open({str(m)!r}, 'w')")) + P.REDUCE)),
    Hostile("posix-system", "posix.system", _raw("posix.pt", lambda m: F.op_global("posix", "system") + F.tup(
        F.op_str(f"touch {m}")) + P.REDUCE)),
    Hostile("global-without-call", "os.system", _zip(lambda m: P.EMPTY_DICT + F.op_str("fn")
                                                     + F.op_global("os", "system") + P.SETITEM)),
    Hostile("stack-global", "os.system", _raw("sg.pt", lambda m: F.op_str("os") + F.op_str("system")
                                              + P.STACK_GLOBAL + F.tup(F.op_str(f"touch {m}")) + P.REDUCE, 4)),
    Hostile("stack-global-memo", "os.system", _raw("sgm.pt", _stack_global_via_memo, 4)),
    Hostile("inst", "os.system", _raw("inst.pt", lambda m: P.MARK + F.op_str(f"touch {m}") + P.INST
                                      + b"os\nsystem\n")),
    Hostile("obj", "os.system", _raw("obj.pt", lambda m: P.MARK + F.op_global("os", "system")
                                     + F.op_str(f"touch {m}") + P.OBJ)),
    Hostile("newobj-popen", "subprocess.Popen", _raw("popen.pt", lambda m: F.op_global("subprocess", "Popen")
                                                     + F.tup(F.tup(F.op_str("touch"), F.op_str(str(m))))
                                                     + P.NEWOBJ)),
    Hostile("zip-beside-tensor", "os.system", lambda d, m: zip_file(d / "model.pt", F.state_dict_stream(
        {"fc.weight": tensor(), "fc.bias": system(m)}))),
    Hostile("zip-training-checkpoint", "os.system", _zip(_training_checkpoint)),
    Hostile("nested-list-dict", "os.system", _zip(lambda m: P.EMPTY_LIST + P.EMPTY_DICT + F.op_str("a")
                                                  + P.EMPTY_LIST + system(m) + P.APPEND + P.SETITEM + P.APPEND)),
    Hostile("legacy", "os.system", _legacy),
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.id for h in HOSTILE])
def test_code_running_pickle_is_refused_naming_its_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hostile: Hostile
) -> None:
    """Refused with TrustRequired (a LoadError) whose one-line message and wanted_imports name the import; the
    marker file the payload would create never appears, even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set."""
    marker = tmp_path / "marker"
    path = hostile.make(tmp_path, marker)
    for env in ({}, {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(TrustRequired) as info:
            load_model(path)
        assert hostile.wanted in one_line(info.value)
        assert hostile.wanted in info.value.wanted_imports
        assert "--trust" in str(info.value)
    with pytest.raises(LoadError):
        Document.open(path)
    assert not marker.exists()


def test_hostile_file_leaves_the_open_model_unchanged(tmp_path: Path) -> None:
    """Trying to open a hostile file while a pruned model is open changes nothing in that model."""
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.4)
    before = full_state(doc.model)
    marker = tmp_path / "marker"
    path = _zip(_training_checkpoint)(tmp_path, marker)
    with pytest.raises(TrustRequired):
        Document.open(path)
    assert_same_state(before, full_state(doc.model))
    assert doc.history.labels == ["l1_unstructured 40% on fc1.weight"]
    assert not marker.exists()


@dataclass
class Bypass:
    """A stream that imports nothing but misuses an opcode on an object it must not touch."""

    id: str
    says: str
    body: bytes


BYPASSES = [
    Bypass("setitem-on-tensor", "SETITEM", tensor() + F.op_str("k") + F.op_int(1) + P.SETITEM),
    Bypass("setitems-on-tensor", "SETITEMS", tensor() + P.MARK + F.op_str("k") + F.op_int(1) + P.SETITEMS),
    Bypass("setitem-on-int", "SETITEM", F.op_int(5) + F.op_str("k") + F.op_int(1) + P.SETITEM),
    Bypass("setitem-on-list", "SETITEM", P.EMPTY_LIST + F.op_str("k") + F.op_int(1) + P.SETITEM),
    Bypass("append-on-dict", "append", P.EMPTY_DICT + F.op_int(1) + P.APPEND),
    Bypass("appends-on-tensor", "extend", tensor() + P.MARK + F.op_int(1) + P.APPENDS),
    Bypass("nested-setitem-on-tensor", "SETITEM", P.EMPTY_DICT + F.op_str("model") + P.EMPTY_LIST + tensor()
           + F.op_str("k") + F.op_int(1) + P.SETITEM + P.APPEND + P.SETITEM),
    Bypass("build-on-tensor", "set_()", tensor() + P.EMPTY_DICT + F.op_str("__class__") + F.op_int(1) + P.SETITEM
           + P.BUILD),
    Bypass("build-on-dict", "build", P.EMPTY_DICT + P.EMPTY_DICT + F.op_str("__class__") + F.op_int(1)
           + P.SETITEM + P.BUILD),
]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("bypass", BYPASSES, ids=[b.id for b in BYPASSES])
def test_weights_only_bypass_shapes_are_refused(tmp_path: Path, bypass: Bypass, legacy: bool) -> None:
    """Known weights-only bypass shapes are refused with a one-line LoadError saying what was refused."""
    body = bypass.body
    if legacy:
        body = body.replace(tensor(), tensor(legacy=True))
        path = tmp_path / "bypass.pt"
        path.write_bytes(F.legacy_bytes(F.stream(body), {"0": (4, bytes(16))}))
    else:
        path = zip_file(tmp_path / "bypass.pt", F.stream(body))
    with pytest.raises(LoadError) as info:
        load_model(path)
    message = one_line(info.value)
    assert "bypass.pt" in message and bypass.says.lower() in message.lower()
    assert "Traceback" not in message and "weights_only=False" not in message


def test_cli_refuses_hostile_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``sparsegui inspect EVIL``: exit 2, one 'error:' line naming the import, nothing on stdout, no marker."""
    marker = tmp_path / "marker"
    for hostile in HOSTILE:
        path = hostile.make(tmp_path, marker)
        capsys.readouterr()
        assert main(["inspect", str(path)]) == 2, hostile.id
        out, err = capsys.readouterr()
        lines = err.splitlines()
        assert out == "" and len(lines) == 1 and lines[0].startswith("error: "), (hostile.id, err)
        assert hostile.wanted in lines[0], hostile.id
    assert not marker.exists()


def test_real_cli_process_refuses_hostile_file(tmp_path: Path) -> None:
    """The same through a real ``python -m sparsegui`` process with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1."""
    marker = tmp_path / "marker"
    path = _zip(_training_checkpoint)(tmp_path, marker)
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "QT_QPA_PLATFORM": "offscreen"}
    env.pop("SPARSEGUI_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "sparsegui", "inspect", str(path)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert "os.system" in proc.stderr
    assert not marker.exists()


# -- HDF5 ----------------------------------------------------------------------------------------------------------


def never_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every dataset read (``Dataset.__getitem__``) from now on."""
    reads: list[str] = []
    original = h5py.Dataset.__getitem__

    def spy(self: h5py.Dataset, *args: object) -> object:
        reads.append(self.name)
        return original(self, *args)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    return reads


def untouched(path: Path) -> None:
    """Give ``path`` an access time before its modification time, so any read (relatime) would move it."""
    os.utime(path, (1_000_000, 1_000_010))


def test_hdf5_virtual_dataset_refused_and_source_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A virtual dataset mapping another local file is refused; that file is never opened for reading."""
    source = tmp_path / "secret.h5"
    with h5py.File(source, "w") as h5:
        h5["w"] = np.arange(6, dtype="f4").reshape(2, 3)
    layout = h5py.VirtualLayout(shape=(2, 3), dtype="f4")
    layout[:] = h5py.VirtualSource(str(source), "w", shape=(2, 3))
    with h5py.File(tmp_path / "vds.h5", "w") as h5:
        h5.create_dataset("fc/bias", data=np.zeros(2, "f4"))
        h5.create_virtual_dataset("fc/weight", layout)
    untouched(source)
    reads = never_read(monkeypatch)
    with pytest.raises(LoadError) as info:
        load_model(tmp_path / "vds.h5")
    assert "virtual" in one_line(info.value) and "refused" in str(info.value)
    assert "/fc/weight" not in reads
    assert source.stat().st_atime == 1_000_000


def test_hdf5_unknown_filter_plugin_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset whose filter pipeline names a plugin nobody registered is refused, naming the filter."""
    with h5py.File(tmp_path / "filter.h5", "w") as h5:
        h5.create_dataset("fc/bias", data=np.zeros(2, "f4"))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((2, 3))
        dcpl.set_filter(32999, h5py.h5z.FLAG_OPTIONAL, (1, 2))
        space = h5py.h5s.create_simple((2, 3))
        dataset = h5py.h5d.create(h5["fc"].id, b"weight", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)
        h5py.Dataset(dataset)[...] = np.ones((2, 3), "f4")
    reads = never_read(monkeypatch)
    with pytest.raises(LoadError) as info:
        load_model(tmp_path / "filter.h5")
    assert "32999" in one_line(info.value) and "refused" in str(info.value)
    assert reads == []


@pytest.mark.parametrize(
    ("shape", "kwargs", "says"),
    [
        ((40_000, 40_000), {}, "but the file has"),  # contiguous, never written: 6.4 GB in a 2 KB file
        ((400_000, 400_000), {"chunks": (1000, 1000)}, "but the file has"),
        ((20_000, 20_000), {"chunks": (100, 100), "compression": "gzip"}, "stores none"),
        ((300_000, 300_000), {"chunks": (100, 100), "compression": "gzip", "first_chunk": True}, "refused"),
    ],
    ids=["contiguous", "chunked", "compressed-empty", "compressed-360GB"],
)
def test_hdf5_declared_size_beyond_the_file_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int], kwargs: dict[str, object], says: str
) -> None:
    """A small file declaring a huge dataset is refused before any dataset is read."""
    options = dict(kwargs)
    first_chunk = options.pop("first_chunk", False)
    with h5py.File(tmp_path / "huge.h5", "w") as h5:
        dataset = h5.create_dataset("fc/weight", shape=shape, dtype="f4", **options)  # type: ignore[arg-type]
        if first_chunk:
            dataset[:100, :100] = 1
    assert (tmp_path / "huge.h5").stat().st_size < 64 * 1024
    reads = never_read(monkeypatch)
    with pytest.raises(LoadError) as info:
        load_model(tmp_path / "huge.h5")
    assert says in one_line(info.value) and "fc.weight" in str(info.value)
    assert reads == []


def test_hdf5_datasets_beyond_available_memory_are_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compressed datasets that fit the file but not the memory left are refused before any is read."""
    with h5py.File(tmp_path / "big.h5", "w") as h5:
        for name in ("a", "b"):
            dataset = h5.create_dataset(f"{name}/weight", shape=(1024, 1024), dtype="f4", chunks=(64, 64),
                                        compression="gzip")
            dataset[:64, :64] = 1
    monkeypatch.setattr(hdf5_files, "_memory_budget", lambda: 6 * 1024 * 1024)  # 6 MiB left; 8 MiB declared
    reads = never_read(monkeypatch)
    with pytest.raises(LoadError) as info:
        load_model(tmp_path / "big.h5")
    assert "memory" in one_line(info.value)
    assert reads == []
    monkeypatch.undo()
    assert load_model(tmp_path / "big.h5").model.a.weight.shape == (1024, 1024)


def test_hdf5_attribute_of_unsafe_type_is_refused_before_reading(tmp_path: Path) -> None:
    """An attribute that is a variable-length sequence (libhdf5 crashes reading a damaged one) is refused."""
    path = tmp_path / "vlen.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("fc/weight", data=np.ones((2, 3), "f4"))
        lengths = np.empty(1, dtype=h5py.vlen_dtype("i4"))
        lengths[0] = np.arange(3, dtype="i4")
        h5.attrs.create("lengths", lengths)
    with pytest.raises(LoadError) as info:
        load_model(path)
    assert "'lengths'" in one_line(info.value) and "refused" in str(info.value)


def test_hdf5_damaged_global_heap_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    """A global heap collection whose free-space object has size 0 (libhdf5 would loop forever reading any
    string attribute) is refused with a LoadError, quickly."""
    path = F.write_valid(tmp_path, "sparsegui_h5")
    data = bytearray(path.read_bytes())
    start = data.find(b"GCOL\x01")
    assert start >= 0
    size = int.from_bytes(data[start + 8 : start + 16], "little")
    position = start + 16
    while position + 16 <= start + size:  # find the free-space object (index 0) and declare it empty
        index = int.from_bytes(data[position : position + 2], "little")
        length = int.from_bytes(data[position + 8 : position + 16], "little")
        if index == 0:
            data[position + 8 : position + 16] = bytes(8)
            break
        position += 16 + (length + 7) // 8 * 8
    else:
        pytest.fail("no free-space object in the collection")
    path.write_bytes(bytes(data))
    # a regression would hang in C, where no alarm reaches: end the run with a traceback instead
    faulthandler.dump_traceback_later(60, exit=True, file=sys.__stderr__)
    try:
        with pytest.raises(LoadError) as info:
            load_model(path)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert "global heap" in one_line(info.value)
