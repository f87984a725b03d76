"""Twenty operations in a row, with the history kept: ``python -m benchmarks.history SIDE CHECKPOINT``.

Over the 48 block matrices of a GPT-2-shaped checkpoint (``attn.c_attn``, ``attn.c_proj``, ``mlp.c_fc``,
``mlp.c_proj`` of each block), 10 % each time, four rounds of: L1 unstructured, random unstructured, L2-structured
(dim 0), global L1 unstructured, random structured (dim 0); random steps are seeded so both sides draw the same.

- ``sparsegui``: a :class:`~sparsegui.core.document.Document` doing the 20 steps (each an undo step), then undoing
  all 20 and redoing all 20, checking after each undo and redo that every mask's bits equal the ones recorded
  (a digest of ``mask.bits()``) when that state was first reached;
- ``torch``: the same calls on the module tree with ``torch.nn.utils.prune`` (no undo: torch has none).

- ``lockstep``: both in one process, comparing the masks after every step (see :func:`lockstep`).

Printed last: one JSON object with the time and peak memory of the 20 steps (and of undo-all and redo-all).
``--masks FILE`` also saves the final masks (numpy ``.npz``) to compare the two sides.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.memory import Sampler, measure

AMOUNT = 0.1
ROUND: tuple[tuple[str, dict[str, Any]], ...] = (
    ("l1_unstructured", {}), ("random_unstructured", {}), ("ln_structured", {"n": 2, "dim": 0}),
    ("global", {}), ("random_structured", {"dim": 0}),
)
STEPS = [(method, kwargs, 1000 + i) for i, (method, kwargs) in enumerate(ROUND * 4)]
MATRICES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def block_matrices(keys: list[str]) -> list[str]:
    return [k for k in keys if k.startswith("transformer.h.") and k.endswith(MATRICES)]


def _digest(doc: Any, names: list[str]) -> list[str]:
    out = []
    for name in names:
        pruning = doc.state.tensors[name].pruning
        out.append("-" if pruning is None else hashlib.blake2b(pruning.mask.bits().tobytes()).hexdigest())
    return out


def run_sparsegui(checkpoint: Path, masks_out: Path | None) -> dict[str, Any]:
    from sparsegui.core.document import Document
    from sparsegui.core.history import mask_bytes

    process = Sampler().start()
    doc = Document.open(checkpoint)
    names = block_matrices(doc.tensor_names())
    digests = [_digest(doc, names)]
    step_seconds = 0.0
    with measure() as m:
        for method, kwargs, seed in STEPS:
            start = time.perf_counter()
            if method == "global":
                doc.global_prune("l1_unstructured", names, AMOUNT)
            else:
                doc.prune(method, names, amount=AMOUNT, seed=seed if method.startswith("random") else None,
                          **kwargs)
            step_seconds += time.perf_counter() - start
            digests.append(_digest(doc, names))  # recorded outside the step's time; no copy of the masks kept
    undo_s = redo_s = 0.0
    exact = True
    with measure() as undo_m:
        for index in range(len(STEPS) - 1, -1, -1):
            start = time.perf_counter()
            doc.undo()
            undo_s += time.perf_counter() - start
            exact &= _digest(doc, names) == digests[index]
    with measure() as redo_m:
        for index in range(1, len(STEPS) + 1):
            start = time.perf_counter()
            doc.redo()
            redo_s += time.perf_counter() - start
            exact &= _digest(doc, names) == digests[index]
    process.stop()
    if masks_out is not None:
        final = {n: doc.state.tensors[n].pruning.mask.numpy() for n in names}  # type: ignore[union-attr]
        np.savez(masks_out, **final)  # type: ignore[arg-type]
    return {"steps": len(STEPS), "tensors": len(names), "seconds": step_seconds, "loop_s": m.seconds,
            "peak_anon": m.peak_anon, "peak_rss": m.peak_rss, "extra_anon": m.extra_anon,
            "process_peak_anon": process.peak_anon, "undo_all_s": undo_s, "redo_all_s": redo_s,
            "undo_peak_anon": undo_m.peak_anon, "redo_peak_anon": redo_m.peak_anon, "bit_exact": exact,
            "history_mask_bytes": mask_bytes([c.after for c in doc.history.done()]),
            "dropped": doc.history.dropped}


def run_torch(checkpoint: Path, masks_out: Path | None) -> dict[str, Any]:
    import torch
    from torch.nn.utils import prune

    from benchmarks.models import SIZES, build_on_meta

    process = Sampler().start()
    config = next(c for c in SIZES.values() if checkpoint.stem == f"gpt2-{c.name}")
    model = build_on_meta(config)
    model.load_state_dict(torch.load(checkpoint, mmap=True, weights_only=True), assign=True)
    modules = dict(model.named_modules())
    names = block_matrices(list(model.state_dict()))
    pairs = [(modules[n.rpartition(".")[0]], "weight") for n in names]
    with measure() as m:
        for method, kwargs, seed in STEPS:
            if method.startswith("random"):
                torch.manual_seed(seed)
            if method == "global":
                prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=AMOUNT)
                continue
            for module, local in pairs:
                getattr(prune, method)(module, local, amount=AMOUNT, **kwargs)
    process.stop()
    if masks_out is not None:
        final = {n: (module.weight_mask != 0).numpy() for n, (module, _) in zip(names, pairs, strict=True)}
        np.savez(masks_out, **final)  # type: ignore[arg-type]
    return {"steps": len(STEPS), "tensors": len(names), "seconds": m.seconds, "peak_anon": m.peak_anon,
            "peak_rss": m.peak_rss, "extra_anon": m.extra_anon, "process_peak_anon": process.peak_anon}


def lockstep(checkpoint: Path) -> dict[str, Any]:
    """Both sides in one process, step by step: after each step, how many mask entries differ and in how many
    tensors the two prune a different number of entries (a difference with equal counts is a choice among tied
    candidates — equal magnitudes or equal random draws — which later steps then build on)."""
    import torch
    from torch.nn.utils import prune

    from benchmarks.scale import plain_model
    from sparsegui.core.document import Document

    doc = Document.open(checkpoint)
    names = block_matrices(doc.tensor_names())
    modules = dict(plain_model(checkpoint).named_modules())
    pairs = [(modules[n.rpartition(".")[0]], "weight") for n in names]
    steps = []
    for method, kwargs, seed in STEPS:
        random = method.startswith("random")
        if method == "global":
            doc.global_prune("l1_unstructured", names, AMOUNT)
            prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=AMOUNT)
        else:
            doc.prune(method, names, amount=AMOUNT, seed=seed if random else None, **kwargs)
            if random:
                torch.manual_seed(seed)
            for module, local in pairs:
                getattr(prune, method)(module, local, amount=AMOUNT, **kwargs)
        differ = counts = 0
        for name, (module, _) in zip(names, pairs, strict=True):
            ours = doc.state.tensors[name].pruning.mask.numpy()  # type: ignore[union-attr]
            plain = (module.weight_mask != 0).numpy()
            differ += int((ours != plain).sum())
            counts += int((~ours).sum()) != int((~plain).sum())
        steps.append({"method": method, "differ": differ, "count_differs": counts})
    first = next((i for i, s in enumerate(steps) if s["differ"]), None)
    return {"steps": steps, "first_difference": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=("sparsegui", "torch", "lockstep"))
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--masks", type=Path, help="save the final masks here (.npz)")
    args = parser.parse_args()
    if args.side == "lockstep":
        print(json.dumps(lockstep(args.checkpoint)))
        return
    run = run_sparsegui if args.side == "sparsegui" else run_torch
    print(json.dumps(run(args.checkpoint, args.masks)))


if __name__ == "__main__":
    main()
