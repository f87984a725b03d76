"""Safety promises that hold for the whole code base: no unsafe torch.load, no old torch, NaN/Inf reported."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
import torch

import sparsegui
from sparsegui.cli import main
from sparsegui.core.errors import SparseGUIError
from sparsegui.core.loading import load_model
from sparsegui.core.safety import require_safe_torch, torch_version_problem

PACKAGE = Path(sparsegui.__file__).parent
TRUSTED_LOADERS = {"torch_files.py": {"_trusted_load"}, "trusted.py": {"load_torchscript", "load_exported_program"}}


def _calls(tree: ast.AST) -> list[tuple[ast.Call, str | None]]:
    """Every call with the name of the function it sits in."""
    found: list[tuple[ast.Call, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call):
                found.append((child, function))
            visit(child, name)

    visit(tree, None)
    return found


def test_every_torch_load_passes_weights_only_explicitly() -> None:
    """A source scan: every torch.load call names weights_only=True, except the one trusted loader (False)."""
    seen = 0
    for path in PACKAGE.rglob("*.py"):
        for call, function in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            target = ast.unparse(call.func)
            if target not in ("torch.load", "torch.jit.load", "torch.export.load"):
                continue
            seen += 1
            if target != "torch.load":
                assert function in TRUSTED_LOADERS.get(path.name, set()), f"{path}:{call.lineno} runs code"
                continue
            flags = {k.arg: k.value for k in call.keywords}
            assert "weights_only" in flags, f"{path}:{call.lineno}: torch.load without weights_only"
            value = ast.literal_eval(flags["weights_only"])
            if value is not True:
                assert function in TRUSTED_LOADERS.get(path.name, set()), f"{path}:{call.lineno} weights_only=False"
    assert seen >= 4


@pytest.mark.parametrize(("version", "bad"), [("2.5.1", True), ("2.9.1+cpu", True), ("2.10.0", False),
                                               ("2.13.0+cpu", False), ("3.0.0", False)])
def test_torch_version_check(version: str, bad: bool) -> None:
    """torch older than 2.10 (known weights-only loader flaws) is refused with the version it needs."""
    problem = torch_version_problem(version)
    assert (problem is not None) == bad
    if bad:
        assert "2.10" in problem and version in problem


def test_old_torch_refused_by_core_and_cli(monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With an old torch the loader raises and the CLI prints one error line, exit 2."""
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, path)
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(SparseGUIError, match=r"2\.10"):
        require_safe_torch()
    with pytest.raises(SparseGUIError):
        load_model(path)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: torch 2.5.1")


def test_nan_and_inf_are_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Tensors holding NaN/Inf are named in the source warnings once counted, and counted per tensor; opening
    alone reads no tensor."""
    from sparsegui.core.document import Document
    from sparsegui.core.inspection import inspect_model

    path = tmp_path / "m.pt"
    weight = torch.ones(3, 4)
    weight[0, 0] = float("nan")
    weight[1, 1] = float("inf")
    torch.save({"fc.weight": weight, "fc.bias": torch.zeros(3)}, path)
    doc = Document.open(path)
    assert not doc.source.warnings and doc.state.tensors["fc.weight"].scanned is None
    doc.scan()
    assert any("fc.weight (2)" in w for w in doc.source.warnings)
    assert doc.report().tensor("fc.weight").nonfinite == 2
    assert inspect_model(load_model(path).model).tensor("fc.weight").nonfinite == 2


def test_sha256_of_the_source_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The source's digest is the file's SHA-256, and inspect --json carries it."""
    path = tmp_path / "m.pt"
    torch.save({"fc.weight": torch.ones(2, 2)}, path)
    loaded = load_model(path)
    assert loaded.source.digest() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.source.to_json()["sha256"] == loaded.source.digest()


def test_open_and_export_report_progress_and_cancel(tmp_path: Path) -> None:
    """Opening, counting (NaN scan), the SHA-256 and exporting report progress; a cancel before the rename keeps the
    old file."""
    from sparsegui.core.document import Document
    from sparsegui.core.errors import Cancelled
    from sparsegui.core.progress import CancelToken

    source = tmp_path / "lenet.pt"
    Document.demo("lenet").export(source)
    steps: list[tuple[float, str]] = []
    doc = Document.open(source, progress=lambda f, text: steps.append((f, text)))
    assert steps[0][1] == "reading lenet.pt"
    counting: list[tuple[float, str]] = []
    doc.scan(progress=lambda f, text: counting.append((f, text)))
    assert any("counting zeros" in text for _, text in counting)
    for reported in (steps, counting):
        fractions = [f for f, _ in reported]
        assert fractions == sorted(fractions) and all(0.0 <= f <= 1.0 for f in fractions)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        Document.open(source, cancel=token)
    assert doc.source.digest(cancel=CancelToken()) is not None

    target = tmp_path / "out.pt"
    target.write_bytes(b"precious")
    doc.prune("l1_unstructured", ["fc1.weight"], amount=0.5)
    exported: list[str] = []
    cancel = CancelToken()

    def progress(fraction: float, text: str) -> None:
        exported.append(text)
        if text.startswith("reading"):
            cancel.cancel()  # the user presses Cancel while the file is read back

    with pytest.raises(Cancelled):
        doc.export(target, progress=progress, cancel=cancel)
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.pt", "out.pt"]  # no temporary file left
    assert doc.modified
    doc.export(target, progress=lambda f, text: exported.append(text))
    assert exported[-1] == "wrote out.pt" and Document.open(target).model is not None


def test_device_move_reports_progress_and_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Moving goes tensor by tensor with progress; a failure midway (out of memory) puts every tensor back, the
    model working as before."""
    from sparsegui.core import document as document_module
    from sparsegui.core.document import Document
    from tests.helpers import assert_same_state, full_state

    doc = Document.demo("lenet")
    doc.prune("l1_unstructured", ["conv1.weight", "fc1.weight"], amount=0.3)
    before = full_state(doc.model)
    steps: list[float] = []
    assert doc.move_to("cpu", progress=lambda f, _text: steps.append(f)).type == "cpu"
    assert steps[0] == 0.0 and steps[-1] == 1.0 and len(steps) == len(doc.tensor_names()) + 1
    moved: list[torch.Tensor] = []
    real = document_module._to_device

    def failing(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        if len(moved) == 4:
            raise torch.OutOfMemoryError("simulated: no memory left on the device")
        moved.append(tensor)
        return tensor.clone()  # a new tensor, as a real move makes

    monkeypatch.setattr(document_module, "_to_device", failing)
    with pytest.raises(torch.OutOfMemoryError):
        doc.move_to("cpu")
    monkeypatch.setattr(document_module, "_to_device", real)
    assert_same_state(full_state(doc.model), before)
    assert doc.device.type == "cpu"


@pytest.mark.cuda
def test_cancelled_move_to_cuda_leaves_everything_on_the_cpu() -> None:
    from sparsegui.core.document import Document
    from sparsegui.core.progress import CancelToken

    doc = Document.demo("resnet")
    doc.prune("l1_unstructured", ["*.weight"], types=["Conv2d"], amount=0.3)
    token = CancelToken()

    def progress(fraction: float, _text: str) -> None:
        if fraction > 0.5:
            token.cancel()

    from sparsegui.core.errors import Cancelled

    with pytest.raises(Cancelled):
        doc.move_to("cuda", cancel=token, progress=progress)
    assert {t.device.type for t in doc.model.state_dict().values()} == {"cpu"}
    assert doc.device.type == "cpu"
