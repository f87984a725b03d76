"""float8 (and fp4) checkpoints, dtypes torch stores but the CPU barely computes on: they open from .pt,
.safetensors and SparseGUI's .h5, bit for bit, with NaN/Inf counted; they export back bit for bit; a format that
cannot hold a dtype says so in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sparsegui.core.document import Document
from sparsegui.core.errors import ExportError, LoadError
from sparsegui.core.export.writers import write_state_dict
from sparsegui.core.loading import load_model
from sparsegui.core.safety import UPCAST_CHUNK, nonfinite_count
from tests.helpers import assert_same_tensors, bits

NONFINITE_PATTERNS = {  # of the 256 byte patterns, how many are NaN or Inf (from each format's definition)
    torch.float8_e4m3fn: 2,  # S.1111.111
    torch.float8_e5m2: 8,  # exponent 11111: ±Inf and six NaNs
    torch.float8_e4m3fnuz: 1,  # 0x80 (negative zero) is the NaN
    torch.float8_e5m2fnuz: 1,
    torch.float8_e8m0fnu: 1,  # 0xFF
    torch.float4_e2m1fn_x2: 0,  # two fp4 values per byte: no NaN, no Inf
}
DTYPES = list(NONFINITE_PATTERNS)
IDS = [str(d).removeprefix("torch.") for d in DTYPES]


def every_pattern(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {
        "fc.weight": torch.arange(256, dtype=torch.uint8).reshape(16, 16).view(dtype),
        "fc.bias": torch.linspace(-1, 1, 16),
    }


def write(path: Path, state: dict[str, torch.Tensor]) -> Path:
    if path.suffix == ".safetensors":
        save_file(state, str(path))  # written by another tool
    elif path.suffix == ".pt":
        torch.save(state, path)
    else:
        write_state_dict(path, state)
    return path


FILES = ["model.pt", "model.safetensors", "model.h5"]


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_every_byte_pattern_opens_exactly(tmp_path: Path, dtype: torch.dtype, name: str) -> None:
    """All 256 byte patterns load bit for bit, and the NaN/Inf warning counts exactly the patterns that are."""
    state = every_pattern(dtype)
    path = write(tmp_path / name, state)
    assert_same_tensors(load_model(path).model.state_dict(), state, ordered=False)
    doc = Document.open(path)
    doc.scan()  # counting (zeros, NaN/Inf) is done on demand, not when opening
    expected = NONFINITE_PATTERNS[dtype]
    if expected:
        assert doc.source.warnings == [f"NaN/Inf: 1 tensor(s) hold NaN or Inf values: fc.weight ({expected})"]
    else:
        assert doc.source.warnings == []


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_exports_back_bit_for_bit(tmp_path: Path, dtype: torch.dtype) -> None:
    """Opened from each format and written to each format, the tensors come back with the same bytes."""
    state = every_pattern(dtype)
    for source in FILES:
        loaded = load_model(write(tmp_path / source, state)).model.state_dict()
        for target in ("out.pt", "out.safetensors", "out.h5"):
            write_state_dict(tmp_path / target, loaded)
            again = load_model(tmp_path / target).model.state_dict()
            assert_same_tensors(again, state, ordered=False)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_document_passes_float8_through(tmp_path: Path, suffix: str) -> None:
    """Open, export untouched: the exported tensor has the source's bytes."""
    state = every_pattern(torch.float8_e4m3fn)
    doc = Document.open(write(tmp_path / "model.pt", state))
    doc.export(tmp_path / f"out{suffix}")
    assert torch.equal(bits(load_model(tmp_path / f"out{suffix}").model.fc.weight), bits(state["fc.weight"]))


def test_nonfinite_count_answers_for_every_dtype() -> None:
    """Never NotImplementedError: every dtype torch can make a tensor of gets a count."""
    for dtype in [getattr(torch, n) for n in dir(torch) if isinstance(getattr(torch, n), torch.dtype)]:
        try:
            tensor = torch.zeros(8, dtype=torch.uint8).view(dtype) if dtype.itemsize == 1 else torch.empty(4,
                                                                                                        dtype=dtype)
        except (RuntimeError, TypeError, NotImplementedError):
            continue  # torch cannot hold a tensor of it at all (sub-byte, quantized…)
        assert nonfinite_count(tensor) >= 0, dtype


def test_nonfinite_count_of_a_large_float8_tensor_goes_chunk_by_chunk() -> None:
    """A float8 tensor larger than one upcast chunk: the NaN in its last chunk and the one in a strided view count."""
    raw = torch.zeros(UPCAST_CHUNK + 3, dtype=torch.uint8)
    raw[-1] = 0x7F
    raw[5] = 0xFF
    tensor = raw.view(torch.float8_e4m3fn)
    assert nonfinite_count(tensor) == 2
    assert nonfinite_count(tensor[1::2]) == 1  # 0xFF at index 5 is in the odd view; 0x7F at UPCAST_CHUNK + 2 is not


@pytest.mark.parametrize("dtype", [torch.complex32, torch.bits8], ids=["complex32", "bits8"])
def test_safetensors_export_names_a_dtype_it_cannot_hold(tmp_path: Path, dtype: torch.dtype) -> None:
    """safetensors has no name for some dtypes torch saves: one line naming it, the existing file untouched;
    .pt and .h5 hold them."""
    tensor = torch.zeros(4, dtype=torch.uint8).view(dtype) if dtype.itemsize == 1 else torch.zeros(4, dtype=dtype)
    state = {"fc.weight": tensor, "fc.bias": torch.ones(2)}
    target = tmp_path / "out.safetensors"
    target.write_bytes(b"previous export")
    with pytest.raises(ExportError) as info:
        write_state_dict(target, state)
    message = str(info.value)
    assert "\n" not in message and str(dtype).removeprefix("torch.") in message and "'fc.weight'" in message
    assert target.read_bytes() == b"previous export"
    for suffix in (".pt", ".h5"):
        write_state_dict(tmp_path / f"out{suffix}", state)
        assert_same_tensors(load_model(tmp_path / f"out{suffix}").model.state_dict(), state, ordered=False)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_legacy_format_float8_is_refused_in_one_line(tmp_path: Path, dtype: torch.dtype) -> None:
    """torch writes these dtypes in its legacy format but its own legacy reader fails on them: one line saying so."""
    path = tmp_path / "legacy.pt"
    torch.save(every_pattern(dtype), path, _use_new_zipfile_serialization=False)
    with pytest.raises(LoadError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and str(dtype).removeprefix("torch.") in message and "legacy" in message


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_inspect_counts_and_pruning_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          dtype: torch.dtype) -> None:
    """inspect counts zeros of every float8 (and fp4) tensor; pruning one is refused naming its dtype."""
    from sparsegui.cli import main
    from sparsegui.core.errors import PruneError

    path = write(tmp_path / "model.pt", every_pattern(dtype))
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    tensor = next(t for m in report["modules"] for t in m["tensors"] if t["name"] == "weight")
    assert tensor["dtype"] == str(dtype).removeprefix("torch.") and 0 <= tensor["zeros"] <= 256
    doc = Document.open(path)
    state = doc.state
    with pytest.raises(PruneError, match=str(dtype).removeprefix("torch.") + ": torch cannot compute masks"):
        doc.prune("l1_unstructured", ["fc.weight"], amount=0.5)
    assert doc.state is state
