"""One measurement on a Llama-shaped Hugging Face model folder, in its own process:
``python -m benchmarks.scale TASK FOLDER [--side torch|sparsegui] [--torch-layers N] [--no-transformers]``.

Tasks (the weights are every 2-D tensor: the embeddings, ``lm_head`` and the seven projections of each block):

- ``open``: from the start of the process, import SparseGUI, ``Document.open(folder)``, then
  ``doc.report(counts=False)`` (the tree the app and ``inspect`` show, no tensor read); with ``--no-transformers``
  the real class is unavailable (``sys.modules["transformers"] = None``) and the tree is rebuilt from the keys;
- ``global_l1``: ``doc.global_prune("l1_unstructured", weights, 0.5)``;
- ``l1_each``: ``doc.prune("l1_unstructured", weights, amount=0.5)``; with ``--side torch`` the plain way instead:
  the real ``LlamaForCausalLM`` built on the meta device, assigned the memory-mapped tensors, then
  ``prune.l1_unstructured`` on each weight — on the embeddings and the first ``--torch-layers`` blocks only when
  given (time-boxed; the figures for the whole model are extrapolated per shape);
- ``undo_redo``: after the global prune, ``doc.undo()`` then ``doc.redo()``;
- ``export``: after the global prune, ``doc.export(folder)`` (a sharded model folder, then deleted).

Nothing is read ahead of the work: the originals are memory-mapped, so the page cache decides how much is read
from disk (the driver records it). The last line printed is one JSON object.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.memory import Measurement, Sampler, measure  # noqa: E402

TASKS = ("open", "global_l1", "l1_each", "undo_redo", "export")
AMOUNT = 0.5


def _figures(m: Measurement) -> dict[str, Any]:
    return {"seconds": m.seconds, "peak_anon": m.peak_anon, "peak_rss": m.peak_rss, "extra_anon": m.extra_anon,
            "extra_rss": m.extra_bytes}


def weights_of(doc: Any) -> list[str]:
    """The 2-D tensors of an open document, in model order."""
    return [name for name in doc.tensor_names() if len(doc.state.tensors[name].values.shape) == 2]


def torch_subset(names: list[str], layers: int | None) -> list[str]:
    """The weights plain torch prunes when time-boxed: everything outside the blocks (the embeddings and
    ``lm_head``) and the first ``layers`` blocks (``model.layers.N.`` or ``transformer.h.N.``)."""
    if layers is None:
        return names
    out = []
    for name in names:
        block = re.search(r"\.(?:layers|h)\.(\d+)\.", name)
        if block is None or int(block.group(1)) < layers:
            out.append(name)
    return out


def sparsegui_masks(doc: Any, names: list[str]) -> dict[str, Any]:
    """Each named tensor's current mask as a numpy bool array (all True when unpruned)."""
    import numpy as np

    out = {}
    for name in names:
        ts = doc.state.tensors[name]
        out[name] = ts.pruning.mask.numpy() if ts.pruning is not None else np.ones(ts.values.shape, bool)
    return out


# -- the plain way --------------------------------------------------------------------------------------------------
def plain_model(path: Path) -> Any:
    """The model built on the meta device and assigned the memory-mapped tensors: ``LlamaForCausalLM`` for a model
    folder (shards read with ``safetensors.safe_open``), the GPT-2-shaped tree of :mod:`benchmarks.models` for a
    ``.pt`` state_dict (``torch.load(mmap=True)``)."""
    import torch

    if not path.is_dir():
        from benchmarks.models import SIZES, build_on_meta

        config = next(c for c in SIZES.values() if path.stem == f"gpt2-{c.name}")
        gpt2 = build_on_meta(config)
        gpt2.load_state_dict(torch.load(path, mmap=True, weights_only=True), strict=True, assign=True)
        return gpt2
    from safetensors import safe_open
    from transformers import AutoConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    state = {}
    for shard in dict.fromkeys(index["weight_map"].values()):
        with safe_open(str(path / shard), framework="pt", device="cpu") as handle:
            state.update({key: handle.get_tensor(key) for key in handle.keys()})  # noqa: SIM118
    model.load_state_dict(state, strict=True, assign=True)
    return model


def torch_masks(model: Any, names: list[str]) -> dict[str, Any]:
    """Each named weight's ``weight_mask`` as a numpy bool array (all True when unpruned)."""
    import numpy as np

    modules = dict(model.named_modules())
    out = {}
    for name in names:
        module = modules[name.rpartition(".")[0]]
        mask = getattr(module, "weight_mask", None)
        out[name] = (mask != 0).numpy() if mask is not None else np.ones(tuple(module.weight.shape), bool)
    return out


def torch_l1_each(folder: Path, layers: int | None) -> dict[str, Any]:
    """Plain ``prune.l1_unstructured`` on each weight (of the subset when time-boxed). For the extrapolation each
    tensor's time, the memory it leaves held (its ``weight_mask`` and ``weight``) and its transient peak above that
    are recorded: the whole model would take the per-shape mean times, hold the per-shape mean memory for every
    tensor, plus the largest transient."""
    from torch.nn.utils import prune

    from benchmarks.memory import anon_bytes

    model = plain_model(folder)
    modules = dict(model.named_modules())
    all_names = [f"{path}.weight" for path, m in modules.items()
                 if getattr(m, "weight", None) is not None and m.weight.dim() == 2]
    names = torch_subset(all_names, layers)
    per: list[tuple[tuple[int, ...], float, int, int]] = []  # shape, seconds, held, transient
    with measure() as m:
        for name in names:
            module = modules[name.rpartition(".")[0]]
            with measure() as one:
                prune.l1_unstructured(module, "weight", amount=AMOUNT)
            held = anon_bytes() - (one.peak_anon - one.extra_anon)
            per.append((tuple(module.weight.shape), one.seconds, held, one.extra_anon - held))
    result: dict[str, Any] = {"measured": _figures(m), "tensors": len(names), "all_tensors": len(all_names)}
    if len(names) < len(all_names):
        by_shape: dict[tuple[int, ...], list[tuple[float, int]]] = {}
        for shape, seconds, held, _ in per:
            by_shape.setdefault(shape, []).append((seconds, held))
        shapes = [tuple(modules[n.rpartition(".")[0]].weight.shape) for n in all_names]

        def mean(shape: tuple[int, ...], i: int) -> float:
            return sum(x[i] for x in by_shape[shape]) / len(by_shape[shape])

        done = sum(math.prod(shape) for shape, *_ in per)
        result["extrapolated"] = {
            "seconds": sum(mean(s, 0) for s in shapes),
            "extra_anon": sum(mean(s, 1) for s in shapes) + max(t for *_, t in per),
            "fraction_measured": done / sum(math.prod(s) for s in shapes),
        }
    return result


# -- the tasks ------------------------------------------------------------------------------------------------------
def task_open(folder: Path, transformers: bool) -> dict[str, Any]:
    """From process start: imports, open, the tree without counts (memory sampled from the start)."""
    sampler = Sampler().start()
    if not transformers:
        sys.modules["transformers"] = None  # type: ignore[assignment]
    start = time.perf_counter()
    from sparsegui.core.document import Document

    imported = time.perf_counter()
    doc = Document.open(folder)
    opened = time.perf_counter()
    report = doc.report(counts=False)
    done = time.perf_counter()
    sampler.stop()
    rows = getattr(report, "modules", None)
    return {"import_s": imported - start, "open_s": opened - imported, "report_s": done - opened,
            "total_s": done - _T0, "before_import_s": start - _T0, "peak_anon": sampler.peak_anon,
            "peak_rss": sampler.peak_rss, "architecture": doc.source.architecture, "inferred": doc.source.inferred,
            "modules": len(rows) if rows is not None else None, "warnings": list(doc.source.warnings)}


def torch_open(path: Path) -> dict[str, Any]:
    """The plain way to a tree from process start: imports, the model on meta assigned the mapped tensors, its
    ``repr`` (the module tree)."""
    sampler = Sampler().start()
    start = time.perf_counter()
    import torch  # noqa: F401

    if path.is_dir():
        import safetensors  # noqa: F401
        import transformers  # noqa: F401
    imported = time.perf_counter()
    model = plain_model(path)
    opened = time.perf_counter()
    tree = repr(model)
    done = time.perf_counter()
    sampler.stop()
    return {"import_s": imported - start, "open_s": opened - imported, "report_s": done - opened,
            "total_s": done - _T0, "before_import_s": start - _T0, "peak_anon": sampler.peak_anon,
            "peak_rss": sampler.peak_rss, "architecture": type(model).__name__, "lines": tree.count("\n") + 1}


def task(name: str, folder: Path, side: str, layers: int | None, transformers: bool = True) -> dict[str, Any]:
    if name == "open":
        return torch_open(folder) if side == "torch" else task_open(folder, transformers)
    if name == "l1_each" and side == "torch":
        return torch_l1_each(folder, layers)
    if side == "torch":
        raise SystemExit(f"{name}: SparseGUI only (plain torch: see the README table)")
    from sparsegui.core.document import Document

    start = time.perf_counter()
    doc = Document.open(folder)
    names = weights_of(doc)
    out: dict[str, Any] = {"open_s": time.perf_counter() - start, "tensors": len(names),
                           "entries": sum(doc.state.tensors[n].numel for n in names)}
    if name == "l1_each":
        with measure() as m:
            doc.prune("l1_unstructured", names, amount=AMOUNT)
        out["measured"] = _figures(m)
        return out
    with measure() as m:
        doc.global_prune("l1_unstructured", names, AMOUNT)
    out["global"] = _figures(m)
    if name == "global_l1":
        out["measured"] = out.pop("global")
    elif name == "undo_redo":
        with measure() as undo:
            doc.undo()
        with measure() as redo:
            doc.redo()
        out["undo"], out["redo"] = _figures(undo), _figures(redo)
    elif name == "export":
        target = folder.parent / f"export-{os.getpid()}"
        try:
            with measure() as m:
                doc.export(target)
            out["measured"] = _figures(m)
            out["written_bytes"] = sum(f.stat().st_size for f in target.iterdir())
            out["files"] = sorted(f.name for f in target.iterdir())
        finally:
            shutil.rmtree(target, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--side", choices=("sparsegui", "torch"), default="sparsegui")
    parser.add_argument("--torch-layers", type=int, default=None)
    parser.add_argument("--no-transformers", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the work")
    args = parser.parse_args()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    result = task(args.task, args.folder, args.side, args.torch_layers, not args.no_transformers)
    print(json.dumps(result))


if __name__ == "__main__":
    main()


def unexplained_differences(values: list[Any], a: list[Any], b: list[Any], per_tensor: bool) -> tuple[int, int]:
    """Compare two sets of unstructured magnitude masks (numpy bools, ``True`` = kept) of the same tensors.

    torch's ``topk`` and SparseGUI may prune different entries among those tied exactly at the threshold (bf16
    has many ties). Returns ``(differing entries, differing entries not explained by a tie)``: a difference is
    explained when both masks prune the same number of entries (in each tensor, or over all of them for a global
    prune) and the entry's ``|w|`` equals the threshold — the largest ``|w|`` pruned."""
    import numpy as np

    groups = [[i] for i in range(len(values))] if per_tensor else [list(range(len(values)))]
    differing = unexplained = 0
    for group in groups:
        mags = [values[i].detach().abs().float().reshape(-1).numpy() for i in group]
        ka = [a[i].reshape(-1) for i in group]
        kb = [b[i].reshape(-1) for i in group]
        pruned = [m[~k] for m, k in zip(mags, ka, strict=True)]
        threshold = max((float(p.max()) for p in pruned if p.size), default=None)
        same_count = sum(int((~k).sum()) for k in ka) == sum(int((~k).sum()) for k in kb)
        for m, x, y in zip(mags, ka, kb, strict=True):
            diff = x != y
            differing += int(diff.sum())
            if not same_count or threshold is None:
                unexplained += int(diff.sum())
            else:
                unexplained += int((diff & (m != np.float32(threshold))).sum())
    return differing, unexplained
