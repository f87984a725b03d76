"""Inputs that are not regular files (pipes, devices, standard streams, /proc files, folders) are refused at once
in one line instead of hanging or reading as empty; shard indexes that are nested too deeply, hold the wrong JSON
types or are huge are one line too; 20,000 safetensors tensors open in linear time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sparsegui.core.document import Document
from sparsegui.core.errors import LoadError
from sparsegui.core.loading import load_model, require_regular_file
from sparsegui.core.loading.masks import load_masks
from sparsegui.core.loading.safetensors_files import KEY_ORDER_METADATA, load_safetensors, load_sharded
from tests import forge as F
from tests.helpers import assert_same_state, full_state

ROOT = Path(__file__).resolve().parents[1]


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    return message


def special(tmp_path: Path, case: str) -> tuple[str, str]:
    """(path, what it is said to be) for each kind of special input."""
    if case == "fifo":
        os.mkfifo(tmp_path / "model.pt")
        return str(tmp_path / "model.pt"), "named pipe"
    if case == "link-to-dev-zero":
        (tmp_path / "model.pt").symlink_to("/dev/zero")
        return str(tmp_path / "model.pt"), "character device"
    if case == "link-to-fifo":
        os.mkfifo(tmp_path / "pipe")
        (tmp_path / "model.pt").symlink_to(tmp_path / "pipe")
        return str(tmp_path / "model.pt"), "named pipe"
    return {
        "dev-zero": ("/dev/zero", "character device"),
        "dev-null": ("/dev/null", "character device"),
        "dev-stdin": ("/dev/stdin", "standard stream"),
        "proc-self-status": ("/proc/self/status", "kernel pseudo-file"),
        "proc-self-environ": ("/proc/self/environ", "kernel pseudo-file"),
        "proc-fd-0": ("/proc/self/fd/0", "kernel pseudo-file"),
    }[case]


CASES = ["fifo", "link-to-dev-zero", "link-to-fifo", "dev-zero", "dev-null", "dev-stdin", "proc-self-status",
         "proc-self-environ", "proc-fd-0"]


@pytest.mark.parametrize("case", CASES)
def test_special_input_is_refused_at_once(tmp_path: Path, case: str) -> None:
    """As a model and as a mask file: one line naming what it is, well before a time bound (a pipe would block
    forever, /dev/zero never ends); an open model is unchanged."""
    path, kind = special(tmp_path, case)
    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["conv1.weight"], amount=0.5)
    state = full_state(doc.model)
    with F.time_bound(10):
        for load in (load_model, load_masks, require_regular_file):
            with pytest.raises(LoadError) as info:
                load(path)  # type: ignore[operator]
            message = one_line(info.value)
            assert kind in message and "not a" in message and "refused" in message, message
        with pytest.raises(LoadError):
            Document.open(path)
        with pytest.raises(Exception, match=kind):
            doc.prune("custom_from_mask", ["conv2.weight"], mask=path)
    assert_same_state(state, full_state(doc.model))


def run_cli(*args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    env.pop("SPARSEGUI_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "sparsegui", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=90, stdin=stdin)


def test_cli_with_stdin_and_a_pipe_nobody_writes(tmp_path: Path) -> None:
    """``sparsegui inspect /dev/stdin`` with stdin a pipe left open, and a FIFO with no writer: exit 2, one line."""
    os.mkfifo(tmp_path / "pipe.pt")
    read_end, write_end = os.pipe()
    try:
        for args, stdin in ((("inspect", "/dev/stdin"), read_end), (("inspect", str(tmp_path / "pipe.pt")), None)):
            proc = run_cli(*args, stdin=stdin)
            lines = proc.stderr.splitlines()
            assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    finally:
        os.close(read_end)
        os.close(write_end)


def test_folders(tmp_path: Path) -> None:
    """A folder as a mask file is refused as a folder; as a model it must be a model folder, and one without
    weights says which files it looked for."""
    with pytest.raises(LoadError) as info:
        load_masks(tmp_path)
    assert "is a folder, not a mask file" in one_line(info.value)
    with pytest.raises(LoadError) as info:
        load_model(tmp_path)
    assert "a folder without model weights: none of model.safetensors.index.json" in one_line(info.value)


def test_regular_files_and_missing_paths_pass_the_check(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"x")
    assert require_regular_file(tmp_path / "model.pt") == tmp_path / "model.pt"
    assert require_regular_file(str(tmp_path / "missing.pt")) == tmp_path / "missing.pt"


# -- shard indexes ---------------------------------------------------------------------------------------------------


def sharded(folder: Path, index: object) -> Path:
    save_file({"fc.weight": torch.ones(2, 2), "fc.bias": torch.zeros(2)}, str(folder / "shard.safetensors"))
    path = folder / "model.safetensors.index.json"
    path.write_text(index if isinstance(index, str) else json.dumps(index))
    return path


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


WEIGHT_MAP = '{"fc.weight": "shard.safetensors", "fc.bias": "shard.safetensors"}'
DEEP_LIST, DEEP_OBJECT = nested(100_000), '{"a":' * 100_000 + "1" + "}" * 100_000
DEEP = {
    "in-a-weight-map-value": '{"weight_map": {"fc.weight": ' + DEEP_LIST + ', "fc.bias": "shard.safetensors"}}',
    "in-the-metadata": '{"metadata": {"x": ' + DEEP_LIST + '}, "weight_map": ' + WEIGHT_MAP + "}",
    "beside-the-weight-map": '{"junk": ' + DEEP_LIST + ', "weight_map": ' + WEIGHT_MAP + "}",
    "objects": '{"weight_map": ' + WEIGHT_MAP + ', "m": ' + DEEP_OBJECT + "}",
}


@pytest.mark.parametrize("case", list(DEEP))
def test_deeply_nested_index_is_one_line(tmp_path: Path, case: str) -> None:
    path = sharded(tmp_path, DEEP[case])
    for load in (load_model, load_sharded):
        with pytest.raises(LoadError) as info:
            load(path)  # type: ignore[operator]
        assert "nested too deeply" in one_line(info.value) and path.name in str(info.value)


def test_nesting_the_parser_can_read_is_kept_as_metadata(tmp_path: Path) -> None:
    path = sharded(tmp_path, '{"metadata": {"x": ' + nested(300) + '}, "weight_map": ' + WEIGHT_MAP + "}")
    loaded = load_model(path)
    assert loaded.source.metadata["x"].startswith("[[[") and len(loaded.source.metadata["x"]) <= 1000


@pytest.mark.parametrize("value", [3, None, [], {}, "", True, ["shard.safetensors"]])
def test_weight_map_values_of_the_wrong_type_are_one_line(tmp_path: Path, value: object) -> None:
    path = sharded(tmp_path, {"weight_map": {"fc.weight": value, "fc.bias": "shard.safetensors"}})
    for load in (load_model, load_sharded):
        with pytest.raises(LoadError) as info:
            load(path)  # type: ignore[operator]
        assert "weight_map['fc.weight'] is not a shard file name" in one_line(info.value)


@pytest.mark.parametrize("index", [[1, 2], {"weight_map": ["fc.weight"]}, {"weight_map": "shard.safetensors"}, 7])
def test_index_of_the_wrong_shape_is_one_line_when_read_directly(tmp_path: Path, index: object) -> None:
    with pytest.raises(LoadError) as info:
        load_sharded(sharded(tmp_path, index))
    assert "weight_map" in one_line(info.value)


def test_huge_index_is_refused_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 65 MiB index (sparse on disk) is refused on its size: no JSON parse ever starts."""
    path = tmp_path / "model.safetensors.index.json"
    with path.open("wb") as handle:
        handle.write(b'{"weight_map": {')
        handle.truncate(65 * 1024 * 1024)
    parsed: list[int] = []
    real_loads = json.loads
    monkeypatch.setattr(json, "loads", lambda text, **kw: parsed.append(len(text)) or real_loads(text, **kw))
    for load in (load_model, load_sharded):
        with pytest.raises(LoadError) as info:
            load(path)  # type: ignore[operator]
        assert "67108864 bytes read" in one_line(info.value)
    assert parsed == []


@pytest.mark.parametrize("order", ['{"a": 1}', "[1, 2]", nested(100_000), "not json"])
def test_bad_key_order_metadata_is_one_line(tmp_path: Path, order: str) -> None:
    save_file({"fc.weight": torch.ones(2)}, str(tmp_path / "m.safetensors"), metadata={KEY_ORDER_METADATA: order})
    with pytest.raises(LoadError) as info:
        load_model(tmp_path / "m.safetensors")
    assert KEY_ORDER_METADATA in one_line(info.value)


# -- linear in the number of tensors ---------------------------------------------------------------------------------


def many_tensors(path: Path, n: int) -> Path:
    keys = [f"layers.{i}.weight" for i in range(n)]
    save_file({k: torch.zeros(2) for k in keys}, str(path), metadata={KEY_ORDER_METADATA: json.dumps(keys[::-1])})
    return path


def test_twenty_thousand_tensors_load_in_linear_time(tmp_path: Path) -> None:
    """20,000 tensors take about ten times what 2,000 take (CPU time, best of three); the quadratic ordering took
    about a hundred times."""
    small, large = many_tensors(tmp_path / "small.safetensors", 2_000), many_tensors(tmp_path / "l.safetensors", 20_000)

    def timed(path: Path) -> float:
        start = time.process_time()
        state, _ = load_safetensors(path)
        assert next(iter(state)).endswith(f".{int(path.stem != 'small') * 18_000 + 1_999}.weight")
        return time.process_time() - start

    small_time = min(timed(small) for _ in range(3))
    large_time = min(timed(large) for _ in range(3))
    assert large_time < 20 * small_time, (small_time, large_time)
    assert len(list(load_model(large).model.layers.children())) == 20_000
