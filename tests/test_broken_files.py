"""Broken files of every format: empty, truncated at many points, random bytes, a PNG under a model's name,
pickles without tensors, mutated bytes. Each gives SparseGUI's own one-line error (the CLI: one line, exit 2), and a
model already open stays exactly as it was.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsegui.cli import main
from sparsegui.core.document import Document
from sparsegui.core.errors import LoadError, PruneError, RecipeError, SparseGUIError
from sparsegui.core.loading import load_model
from sparsegui.core.loading.masks import load_masks
from sparsegui.core.recipe import apply_recipe, load_recipe
from tests import forge as F
from tests.helpers import assert_same_state, full_state

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
CUTS = 10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> F.Corpus:
    return F.Corpus.build(tmp_path_factory.mktemp("corpus"))


@dataclass
class OpenModel:
    """A pruned model that stays open while every broken file is tried; it must never change."""

    doc: Document
    state: dict[str, object]
    labels: list[str]

    def assert_unchanged(self) -> None:
        assert_same_state(self.state, full_state(self.doc.model))
        assert self.doc.history.labels == self.labels


@pytest.fixture(scope="module")
def open_model() -> Iterator[OpenModel]:
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["conv1.weight"], amount=0.5)
    doc.global_prune("l1_unstructured", ["fc*.weight"], 0.3)
    model = OpenModel(doc, full_state(doc.model), list(doc.history.labels))
    yield model
    model.assert_unchanged()


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    assert "Traceback" not in message
    return message


def cli_one_line_error(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert out == "" and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def assert_refused(path: Path, open_model: OpenModel, capsys: pytest.CaptureFixture[str]) -> str:
    """``path`` gives a one-line LoadError from the loader, from Document.open (with the open model untouched) and
    from the CLI (exit 2, one line)."""
    with pytest.raises(LoadError) as info:
        load_model(path)
    message = one_line(info.value)
    with pytest.raises(LoadError):
        Document.open(path)
    open_model.assert_unchanged()
    line = cli_one_line_error(capsys, "inspect", path)
    named = [p.name for p in path.parent.iterdir() if p.name in message]  # a shard's error names the shard
    assert named and named[0] in line, (message, line)
    return message


def write_kind(folder: Path, corpus: F.Corpus, kind: str, name: str, data: bytes) -> Path:
    """Write ``kind``'s valid files into ``folder`` with file ``name`` replaced by ``data``; returns the one to open."""
    folder.mkdir(parents=True, exist_ok=True)
    files = dict(corpus.files[kind])
    files[name] = data
    for file_name, content in files.items():
        (folder / file_name).write_bytes(content)
    return folder / next(iter(files))


# (kind, which of its files is broken): a sharded checkpoint can break in its index or in a shard
TARGETS = [(kind, 0) for kind in F.KINDS] + [("sharded", 2)]
TARGET_IDS = [f"{kind}-{'shard' if index else 'main'}" for kind, index in TARGETS]


def target_name(corpus: F.Corpus, kind: str, index: int) -> str:
    return list(corpus.files[kind])[index]


@pytest.mark.parametrize(("kind", "index"), TARGETS, ids=TARGET_IDS)
def test_empty_file(tmp_path: Path, corpus: F.Corpus, open_model: OpenModel, capsys: pytest.CaptureFixture[str],
                    kind: str, index: int) -> None:
    """An empty file (or an empty shard) is a one-line LoadError that says so."""
    name = target_name(corpus, kind, index)
    path = write_kind(tmp_path, corpus, kind, name, b"")
    message = assert_refused(path, open_model, capsys)
    assert "empty" in message or "corrupt" in message


@pytest.mark.parametrize("cut", range(CUTS))
@pytest.mark.parametrize(("kind", "index"), TARGETS, ids=TARGET_IDS)
def test_truncated_file(tmp_path: Path, corpus: F.Corpus, open_model: OpenModel,
                        capsys: pytest.CaptureFixture[str], kind: str, index: int, cut: int) -> None:
    """A file cut short anywhere (from 1 byte to 1 byte short, 10 points) never loads and is a one-line LoadError."""
    name = target_name(corpus, kind, index)
    data = corpus.files[kind][name]
    length = 1 + (len(data) - 2) * cut // (CUTS - 1)
    assert 1 <= length < len(data)
    assert_refused(write_kind(tmp_path, corpus, kind, name, data[:length]), open_model, capsys)


SUFFIXES = [".pt", ".pth", ".bin", ".safetensors", ".h5", ".safetensors.index.json"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_random_bytes(tmp_path: Path, open_model: OpenModel, capsys: pytest.CaptureFixture[str],
                      suffix: str) -> None:
    """Random bytes under any model name are a one-line LoadError."""
    for seed in range(3):
        path = tmp_path / f"random{seed}{suffix}"
        path.write_bytes(random.Random(seed).randbytes(4096 * (seed + 1)))
        assert_refused(path, open_model, capsys)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_png_renamed(tmp_path: Path, open_model: OpenModel, capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    """A PNG renamed to a model's extension is refused as "a PNG image", not parsed as that format."""
    path = tmp_path / f"picture{suffix}"
    path.write_bytes(PNG)
    assert "PNG" in assert_refused(path, open_model, capsys)


NON_TENSORS: dict[str, object] = {
    "dict-of-ints": {"a": 1, "b": 2},
    "list": [1, 2, 3],
    "int": 3,
    "text": "model weights",
    "nested-config": {"model": {"hidden": 64, "layers": [1, 2]}, "epoch": 3},
    "float-lists": {"fc.weight": [[0.5, 1.0], [2.0, 3.0]], "fc.bias": [0.0, 0.0]},
    "empty-dict": {},
    "none": None,
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("case", list(NON_TENSORS))
def test_pickled_non_tensor_objects(tmp_path: Path, open_model: OpenModel, capsys: pytest.CaptureFixture[str],
                                    case: str, legacy: bool) -> None:
    """A torch file holding plain Python values (no tensors) loads safely but is not a model: one-line LoadError."""
    path = tmp_path / "values.pt"
    torch.save(NON_TENSORS[case], path, _use_new_zipfile_serialization=not legacy)
    assert_refused(path, open_model, capsys)


MUTATIONS_PER_KIND = 8


def mutation_cases() -> list[tuple[str, int]]:
    return [(kind, seed) for kind in F.KINDS for seed in range(MUTATIONS_PER_KIND)]


@pytest.mark.parametrize(("kind", "seed"), mutation_cases())
def test_mutated_bytes(tmp_path: Path, corpus: F.Corpus, open_model: OpenModel,
                       capsys: pytest.CaptureFixture[str], kind: str, seed: int) -> None:
    """Valid files with a few bytes flipped, overwritten, inserted or deleted either load or are a one-line LoadError
    (never another exception); the open model is unchanged either way."""
    rng = random.Random(f"{kind}-{seed}")
    path = corpus.write(tmp_path, kind, rng.choice(corpus.targets(kind)), F.random_ops(rng))
    if F.load_outcome(path) == "LoadError":
        assert_refused(path, open_model, capsys)
    open_model.assert_unchanged()


# -- mask files ----------------------------------------------------------------------------------------------------

MASK_FORMATS = ["pt", "safetensors", "h5", "npy", "npz"]


@pytest.fixture(scope="module")
def mask_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("masks")
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["conv1.weight"], amount=0.5)
    files = {}
    for ext in ("pt", "safetensors", "h5"):
        doc.export_masks(folder / f"masks.{ext}")
    np.save(folder / "masks.npy", np.ones((6, 1, 3, 3), bool))
    np.savez(folder / "masks.npz", **{"conv1.weight": np.ones((6, 1, 3, 3), bool)})
    for ext in MASK_FORMATS:
        files[ext] = (folder / f"masks.{ext}").read_bytes()
        assert load_masks(folder / f"masks.{ext}")
    return files


def broken_versions(data: bytes, seed: str) -> Iterator[tuple[str, bytes]]:
    yield "empty", b""
    for cut in range(CUTS):
        yield f"cut-{cut}", data[: 1 + (len(data) - 2) * cut // (CUTS - 1)]
    yield "random", random.Random(seed).randbytes(2048)
    yield "png", PNG


def assert_mask_refused(path: Path, open_model: OpenModel) -> None:
    with pytest.raises(LoadError) as info:
        load_masks(path)
    one_line(info.value)
    with pytest.raises(PruneError) as prune_info:
        open_model.doc.prune("custom_from_mask", ["conv2.weight"], mask=path)
    one_line(prune_info.value)
    open_model.assert_unchanged()


@pytest.mark.parametrize("ext", MASK_FORMATS)
def test_broken_mask_files(tmp_path: Path, mask_files: dict[str, bytes], open_model: OpenModel, ext: str) -> None:
    """Empty, truncated (10 points), random and PNG mask files: a one-line LoadError from the mask loader, a
    PruneError from custom_from_mask, and the open model unchanged."""
    for case, data in broken_versions(mask_files[ext], ext):
        path = tmp_path / f"{case}.{ext}"
        path.write_bytes(data)
        assert_mask_refused(path, open_model)


@pytest.mark.parametrize("ext", MASK_FORMATS)
def test_mutated_mask_files(tmp_path: Path, mask_files: dict[str, bytes], open_model: OpenModel, ext: str) -> None:
    """Mutated mask files load or give a one-line LoadError (an .npz member failing its CRC included)."""
    rng = random.Random(ext)
    for i in range(MUTATIONS_PER_KIND):
        path = tmp_path / f"mutated{i}.{ext}"
        path.write_bytes(F.mutate(mask_files[ext], F.random_ops(rng)))
        try:
            with F.time_bound(30):
                load_masks(path)
        except LoadError as exc:
            one_line(exc)
    open_model.assert_unchanged()


def test_npz_member_with_bad_crc_is_a_load_error(tmp_path: Path, mask_files: dict[str, bytes]) -> None:
    """An .npz reads its members lazily: a damaged member must still surface as a LoadError (not BadZipFile)."""
    data = bytearray(mask_files["npz"])
    start = data.find(b"\x93NUMPY")
    data[start + 120] ^= 0xFF  # inside the first member's array bytes: its CRC no longer matches
    path = tmp_path / "masks.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(LoadError) as info:
        load_masks(path)
    assert "masks.npz" in one_line(info.value)


# -- recipes -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recipe_text() -> bytes:
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["conv1.weight"], amount=0.5)
    doc.prune("ln_structured", ["fc1.weight"], amount=0.25, n=2, dim=0)
    doc.global_prune("random_unstructured", ["fc*.weight"], 0.2, seed=3)
    return json.dumps(doc.recipe(), indent=2).encode()


def test_broken_recipe_files(tmp_path: Path, recipe_text: bytes, open_model: OpenModel,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """Empty, truncated (10 points), random and PNG recipes: a one-line RecipeError; the CLI exits 2 with one line
    and writes no output."""
    out = tmp_path / "out.pt"
    for case, data in broken_versions(recipe_text, "recipe"):
        path = tmp_path / f"{case}.json"
        path.write_bytes(data)
        with pytest.raises(RecipeError) as info:
            load_recipe(path)
        one_line(info.value)
        cli_one_line_error(capsys, "apply", path, "--demo", "lenet", "-o", out)
        assert not out.exists()
    open_model.assert_unchanged()


def test_mutated_recipes_apply_fully_or_not_at_all(tmp_path: Path, recipe_text: bytes) -> None:
    """A mutated recipe is refused (RecipeError) or replays; one that fails midway leaves the model as it was."""
    rng = random.Random("recipe")
    refused = 0
    for i in range(24):
        path = tmp_path / f"mutated{i}.json"
        path.write_bytes(F.mutate(recipe_text, F.random_ops(rng, max_ops=2)))
        doc = Document.demo("lenet")
        doc.prune("l1_unstructured", ["fc3.weight"], amount=0.1)
        before, labels = full_state(doc.model), list(doc.history.labels)
        try:
            apply_recipe(doc, load_recipe(path))
        except SparseGUIError as exc:
            one_line(exc)
            refused += 1
            assert_same_state(before, full_state(doc.model))
            assert doc.history.labels == labels
    assert refused > 0


def test_zip_needing_a_newer_zip_version_is_a_load_error(
    tmp_path: Path, corpus: F.Corpus, open_model: OpenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zip whose central directory asks for an unknown zip version (zipfile raises NotImplementedError) is a
    one-line LoadError, like any other damaged zip."""
    data = bytearray(corpus.files["zip"]["model.pt"])
    central = data.find(b"PK\x01\x02")
    data[central + 6 : central + 8] = (147).to_bytes(2, "little")  # "version needed to extract": 14.7
    path = tmp_path / "model.pt"
    path.write_bytes(bytes(data))
    assert "zip" in assert_refused(path, open_model, capsys)
