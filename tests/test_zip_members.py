"""Zip checkpoints whose members are compressed load with their real values; zip oddities that make readers disagree
(duplicate names, overlapping members, lying sizes, encryption, unknown methods) are refused with one line, and the
file is left byte for byte as it was."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsegui.cli import main
from sparsegui.core.errors import LoadError
from sparsegui.core.loading import load_model
from sparsegui.core.loading.masks import load_masks
from tests import forge as F
from tests import forge_zip as Z
from tests.helpers import assert_same_tensors


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    return message


def random_state() -> dict[str, torch.Tensor]:
    """Random (incompressible) float data, so a record memory-mapped while compressed cannot pass for the original."""
    gen = torch.Generator().manual_seed(1)
    return {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=gen),
        "conv.bias": torch.randn(8, generator=gen),
        "fc.weight": torch.randn(10, 72, generator=gen).half(),
        "fc.bias": torch.zeros(10),
        "bn.num_batches_tracked": torch.tensor(7),
    }


def repack(source: Path, target: Path, compress: Callable[[str], bool]) -> Path:
    """Rewrite a torch zip checkpoint member by member, deflating the members ``compress`` picks."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            method = zipfile.ZIP_DEFLATED if compress(info.filename) else zipfile.ZIP_STORED
            dst.writestr(info.filename, src.read(info), compress_type=method)
    return target


def zip_r(source: Path, target: Path) -> Path:
    """What someone does by hand: unzip the checkpoint into a folder, then ``zip -r`` the folder (deflate)."""
    folder = target.parent / "unpacked"
    with zipfile.ZipFile(source) as archive:
        archive.extractall(folder)
    top = next(folder.iterdir())
    if shutil.which("zip"):
        subprocess.run(["zip", "-q", "-r", str(target.resolve()), top.name], cwd=folder, check=True)
    else:  # the same layout, written by Python
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(top.rglob("*")):
                archive.write(path, path.relative_to(folder).as_posix())
    return target


REPACKS: dict[str, Callable[[Path, Path], Path]] = {
    "zip-r-of-unpacked-folder": zip_r,
    "only-data-pkl-deflated": lambda s, t: repack(s, t, lambda n: n.endswith("data.pkl")),
    "one-record-deflated": lambda s, t: repack(s, t, lambda n: n.endswith("data/0")),
    "every-member-deflated": lambda s, t: repack(s, t, lambda n: True),
}


@pytest.mark.parametrize("how", list(REPACKS))
def test_compressed_checkpoint_loads_its_real_values(tmp_path: Path, how: str) -> None:
    """A checkpoint re-packed with deflate opens with every tensor bit for bit as saved (memory-mapping the
    compressed bytes gave garbage or a crash), and the file is not modified."""
    state = random_state()
    torch.save(state, tmp_path / "original.pt")
    path = REPACKS[how](tmp_path / "original.pt", tmp_path / "repacked.pt")
    with zipfile.ZipFile(path) as archive:
        assert any(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist())
    before = path.read_bytes()
    loaded = load_model(path)
    assert_same_tensors(loaded.model.state_dict(), state, ordered=False)
    assert path.read_bytes() == before


def test_compressed_checkpoint_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``sparsegui inspect`` of a ``zip -r`` re-pack succeeds."""
    torch.save(random_state(), tmp_path / "original.pt")
    path = zip_r(tmp_path / "original.pt", tmp_path / "repacked.pt")
    assert main(["inspect", str(path)]) == 0
    assert "10×72" in capsys.readouterr().out


PICKLE = F.state_dict_stream({"fc.weight": F.rebuild_tensor("0", 4, [2, 2]), "fc.bias": F.rebuild_tensor("1", 2, [2])})
RECORDS = {"0": bytes(range(16)), "1": bytes(8)}


def members() -> list[Z.RawMember]:
    return Z.torch_members(PICKLE, RECORDS)


def _duplicate_record(short_first: bool = True) -> list[Z.RawMember]:
    """One data/0 too short for its tensor, one long enough: readers that pick different ones check one record's
    size and map the other's bytes."""
    short, long = bytes(4), bytes(range(16))
    base = Z.torch_members(PICKLE, {"0": short if short_first else long, "1": bytes(8)})
    return [*base[:2], Z.RawMember.stored("archive/data/0", long if short_first else short), *base[2:]]


def _duplicate_pickle() -> list[Z.RawMember]:
    base = members()
    return [base[0], Z.RawMember.stored("archive/data.pkl", F.state_dict_stream({})), *base[1:]]


def _overlapping() -> list[Z.RawMember]:
    """data/1's directory entry points inside data/0's data, where a complete local header for it is hidden."""
    hidden = Z.RawMember.stored("archive/data/1", bytes(8))
    embedded = Z.raw_zip([Z.RawMember.stored(hidden.name, hidden.data, listed=False)])
    embedded = embedded[: embedded.find(b"PK\x05\x06")]
    base = Z.torch_members(PICKLE, {"0": embedded})
    offset = sum(30 + len(m.name) + len(m.data) for m in base[:2]) + 30 + len(base[2].name)
    return [*base, Z.RawMember.stored(hidden.name, hidden.data, local=False, offset=offset)]


def _same_local_header() -> list[Z.RawMember]:
    """Two directory entries, two names, one local header."""
    base = members()
    return [*base, Z.RawMember.stored("archive/data/2", RECORDS["0"], local=False, offset=0)]


def _local_header_longer() -> list[Z.RawMember]:
    base = members()
    base[2].local_stored = len(base[2].data) + 64
    return base


def _runs_past_the_data() -> list[Z.RawMember]:
    base = members()
    base[2] = Z.RawMember(base[2].name, base[2].data, 100_000, base[2].crc, local_stored=100_000, dir_stored=100_000)
    return base


def _encrypted() -> list[Z.RawMember]:
    base = members()
    base[2].flags |= 0x1
    return base


def _bzip2() -> list[Z.RawMember]:
    base = members()
    base[2].method = zipfile.ZIP_BZIP2
    return base


def _hidden_first_member() -> list[Z.RawMember]:
    return [Z.RawMember.stored("archive/extra", bytes(64), listed=False), *members()]


ODDITIES: dict[str, tuple[Callable[[], list[Z.RawMember]], str]] = {
    "duplicate-record": (_duplicate_record, "two members named 'archive/data/0'"),
    "duplicate-record-short-last": (lambda: _duplicate_record(False), "two members named 'archive/data/0'"),
    "duplicate-data-pkl": (_duplicate_pickle, "two members named 'archive/data.pkl'"),
    "overlapping-members": (_overlapping, "overlap"),
    "two-names-one-header": (_same_local_header, "disagrees with the directory"),
    "local-header-says-more": (_local_header_longer, "local header says"),
    "record-runs-past-the-data": (_runs_past_the_data, "runs past"),
    "encrypted-member": (_encrypted, "encrypted"),
    "bzip2-member": (_bzip2, "compression method 12"),
    "bytes-before-first-member": (_hidden_first_member, "before its first member"),
}


def test_forged_archive_is_valid_when_unchanged(tmp_path: Path) -> None:
    """The hand-made layout itself loads: the refusals below are about each oddity, not the forging."""
    path = tmp_path / "plain.pt"
    path.write_bytes(Z.raw_zip(members()))
    loaded = load_model(path)
    assert loaded.model.fc.weight.reshape(-1).view(torch.uint8).tolist() == list(range(16))


@pytest.mark.parametrize("case", list(ODDITIES))
def test_zip_oddity_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    make, says = ODDITIES[case]
    path = tmp_path / "odd.pt"
    path.write_bytes(Z.raw_zip(make()))
    before = path.read_bytes()
    with pytest.raises(LoadError) as info:
        load_model(path)
    message = one_line(info.value)
    assert "odd.pt" in message and says in message and "refused" in message
    assert path.read_bytes() == before


def test_zip_oddity_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "odd.pt"
    path.write_bytes(Z.raw_zip(_duplicate_record()))
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("error: ") and "two members" in err


def npz_member(name: str, array: np.ndarray) -> Z.RawMember:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array)
    return Z.RawMember.stored(name, buffer.getvalue())


@pytest.mark.parametrize("case", ["duplicate", "encrypted", "overlapping"])
def test_npz_mask_file_oddities_are_refused(tmp_path: Path, case: str) -> None:
    """The same checks guard .npz mask files (numpy reads members by name through zipfile)."""
    first = npz_member("conv1.weight.npy", np.ones((2, 2), bool))
    second = npz_member("conv1.weight.npy", np.zeros((2, 2), bool))
    if case == "duplicate":
        parts = [first, second]
    elif case == "encrypted":
        first.flags |= 0x1
        parts = [first]
    else:
        parts = [first, Z.RawMember.stored("fc.weight.npy", first.data, local=False, offset=10)]
    path = tmp_path / "masks.npz"
    path.write_bytes(Z.raw_zip(parts))
    with pytest.raises(LoadError) as info:
        load_masks(path)
    assert "masks.npz" in one_line(info.value) and "refused" in str(info.value)
