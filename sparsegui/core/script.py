"""The session as a plain PyTorch script: torch (and safetensors when the source needs it), no SparseGUI.

The script loads the same source, gives each tensor the session touches a small ``nn.Module`` holding it as a
parameter under its own local name (torch's pruning only ever looks at that one tensor, so this is exactly what
pruning it inside the real model does), applies every recorded step with ``torch.nn.utils.prune`` — same methods,
settings, seeds and target order — and saves the state_dict under the source's keys, clean or with
``X_orig``/``X_mask``. Methods that are not torch's appear as imports of their module (a plugin file is loaded from
its path); SparseGUI's own ``nm_unstructured`` is written into the script.

Masks equal ``sparsegui apply`` of the same recipe except where L1 entries tie at the threshold (the count is always
the same; see :mod:`sparsegui.core.fastprune`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sparsegui import __version__
from sparsegui.core import demos, nm
from sparsegui.core.errors import ExportError
from sparsegui.core.loading.source import SourceInfo
from sparsegui.core.methods import BUILTINS, resolve_method
from sparsegui.core.structure import ModelStructure

TORCH_FUNCTIONS = {"identity", "random_unstructured", "l1_unstructured", "random_structured", "ln_structured",
                   "custom_from_mask"}


def _loader(source: SourceInfo) -> tuple[list[str], str]:
    """(imports, the body of ``load()`` returning the source's state_dict as a dict)."""
    if source.demo:
        classes = [demos.LeNet, demos.BasicBlock, demos.TinyResNet, demos.TinyTransformer]
        code = "\n\n".join(inspect.getsource(c) for c in classes)
        factory = {"lenet": "LeNet()", "resnet": "TinyResNet()", "transformer": "TinyTransformer()"}[source.demo]
        body = (f"    torch.manual_seed(0)  # SparseGUI's demos are drawn from seed 0\n"
                f"    return dict({factory}.state_dict())\n")
        return ["import torch.nn.functional as F"], f"{code}\n\ndef load():\n{body}"
    if source.path is None:
        raise ExportError("this model has no file to load from")
    if source.format.startswith(("TorchScript", "torch.export", "pickled")) or source.trusted:
        raise ExportError(f"a script cannot load a {source.format} source without running its code; export the "
                          "state_dict first and script that")
    weights = source.weights or source.path
    path = Path(weights)
    if path.suffix in (".h5", ".hdf5"):
        raise ExportError("a script reads .pt/.bin and .safetensors sources; export this HDF5 model to "
                          ".safetensors first and script that")
    if path.name.endswith(".safetensors.index.json"):
        body = (f"    index = json.loads(Path({str(path)!r}).read_text())\n"
                "    state = {}\n"
                "    for shard in dict.fromkeys(index[\"weight_map\"].values()):\n"
                f"        state.update(load_file(str(Path({str(path.parent)!r}) / shard)))\n"
                "    return state\n")
        return ["import json", "from pathlib import Path", "from safetensors.torch import load_file"], \
            f"def load():\n{body}"
    if path.suffix == ".safetensors":
        return ["from safetensors.torch import load_file"], f"def load():\n    return load_file({str(path)!r})\n"
    if path.name.endswith(".bin.index.json"):
        body = (f"    index = json.loads(Path({str(path)!r}).read_text())\n"
                "    state = {}\n"
                "    for shard in dict.fromkeys(index[\"weight_map\"].values()):\n"
                f"        state.update(torch.load(Path({str(path.parent)!r}) / shard, map_location=\"cpu\", "
                "weights_only=True))\n"
                "    return state\n")
        return ["import json", "from pathlib import Path"], f"def load():\n{body}"
    body = f"    checkpoint = torch.load({str(path)!r}, map_location=\"cpu\", weights_only=True)\n"
    for part in (source.key or "").split("/"):
        if part:
            body += f"    checkpoint = checkpoint[{part!r}]\n"
    body += "    return dict(checkpoint)\n"
    return [], f"def load():\n{body}"


def _method_call(step: dict[str, Any], base_dir: Path | None) -> tuple[list[str], str, str]:
    """(imports, code defined before the steps, the call template with ``{m}`` and ``{n}``)."""
    method = step["method"]
    settings = {k: step[k] for k in ("amount", "n", "dim") if step.get(k) is not None}
    settings.update(step.get("params") or {})
    if method == "nm_unstructured":
        settings.update({"keep": step.get("keep", 2), "group": step.get("group", 4)})
        return [], "", "nm_unstructured(*tensor({t}), " + ", ".join(f"{k}={v!r}" for k, v in settings.items()) + \
            ", dim=DIMS[{t}])"
    args = "".join(f", {k}={v!r}" for k, v in settings.items())
    if method == "custom_from_mask":
        return [], "", "prune.custom_from_mask(*tensor({t}), mask=mask_for({t}, " + repr(step["mask"]) + "))"
    if method in TORCH_FUNCTIONS:
        return [], "", f"prune.{method}(*tensor({{t}}){args})"
    spec = resolve_method(method, base_dir)
    cls = spec.cls
    if method in BUILTINS or spec.origin.startswith("plugin") or ":" not in method:
        module = cls.__module__
        return [f"from {module} import {cls.__name__}"], "", f"{cls.__name__}.apply(*tensor({{t}}){args})"
    file = method.rpartition(":")[0]
    loader = ("def plugin_from_file(path, name):\n"
              "    spec = importlib.util.spec_from_file_location(\"session_plugin\", path)\n"
              "    module = importlib.util.module_from_spec(spec)\n"
              "    spec.loader.exec_module(module)  # runs the plugin file, as SparseGUI did when you loaded it\n"
              "    return getattr(module, name)\n")
    return ["import importlib.util"], loader, \
        f"plugin_from_file({file!r}, {cls.__name__!r}).apply(*tensor({{t}}){args})"


def session_script(source: SourceInfo, structure: ModelStructure, steps: Sequence[dict[str, Any]], output: str, *,
                   keep_masks: bool = False, base_dir: Path | None = None) -> str:
    """The Python text of a standalone script that repeats ``steps`` (resolved: concrete targets, seeds) on the
    source with plain torch and saves to ``output`` (or the path given on its command line)."""
    imports = ["import sys", "", "import torch", "from torch import nn", "from torch.nn.utils import prune"]
    extra_imports, loader = _loader(source)
    defined: list[str] = []
    lines: list[str] = []
    dims: dict[str, int] = {}
    needs_masks = needs_nm = False
    for number, step in enumerate(steps, 1):
        targets = list(step.get("targets") or [])
        lines.append(f"# step {number}: {json.dumps(step)}")
        if step["op"] == "remove":
            lines += [f"prune.remove(*tensor({t!r}))" for t in targets]
            continue
        if step.get("seed") is not None:
            lines.append(f"torch.manual_seed({step['seed']})")
        if step["op"] == "global":
            cls = {"l1_unstructured": "L1Unstructured", "random_unstructured": "RandomUnstructured"}[step["method"]]
            lines.append("prune.global_unstructured([" + ", ".join(f"tensor({t!r})" for t in targets) +
                         f"], pruning_method=prune.{cls}, amount={step['amount']!r})")
            continue
        more, code, call = _method_call(step, base_dir)
        extra_imports += more
        if code and code not in defined:
            defined.append(code)
        needs_masks |= step["method"] == "custom_from_mask"
        if step["method"] == "nm_unstructured":
            needs_nm = True
            for t in targets:
                if step.get("dim") is not None:
                    dims[t] = step["dim"]
                else:
                    dims[t] = list(structure.tensors[t].axes).index("in")
        lines += [call.format(t=repr(t)) for t in targets]
    if needs_nm:
        defined.append("\n\n".join(inspect.getsource(f) for f in (nm.check_nm, nm._rows, nm._unrows, nm.nm_keep)))
        defined.append(inspect.getsource(nm.NMUnstructured).replace("  # type: ignore[override]", "")
                       .replace("  # type: ignore[no-any-return]", ""))
        defined.append(inspect.getsource(nm.nm_unstructured))
        defined.append(f"ROWS_PER_STEP = {nm.ROWS_PER_STEP}\nDIMS = {dims!r}")
    if needs_masks:
        defined.append(MASK_LOADER)
    tied = {alias: slot.name for slot in structure.tensors.values() for alias in slot.aliases}
    output_kind = "safetensors" if output.endswith(".safetensors") else "torch"
    if output_kind == "safetensors":
        extra_imports.append("from safetensors.torch import save_file")
    header = (f'"""What a SparseGUI session did, with plain torch.nn.utils.prune.\n\n'
              f"Source: {source.path or f'{source.demo} (built-in demo)'}\n"
              f"Written by SparseGUI {__version__} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; it does not "
              f"import SparseGUI.\n\nRun: python {{this file}} [OUTPUT]   (default: {output})\n"
              f'"""\n')
    body = [header, "from __future__ import annotations", "", *sorted(dict.fromkeys(extra_imports)), *imports, "",
            "", loader, "",
            *[d + "\n" for d in defined],
            f"PREFIX = {source.prefix!r}  # a module./_orig_mod. prefix SparseGUI stripped, put back on save",
            f"TIED = {tied!r}  # names that are one tensor: pruned once, under the first name",
            f"OUTPUT = sys.argv[1] if len(sys.argv) > 1 else {output!r}",
            f"KEEP_MASKS = {keep_masks!r}  # True: save X_orig and X_mask; False: make the pruning permanent", "",
            SCAFFOLD, *lines, "", SAVE.replace("{writer}", WRITERS[output_kind])]
    return "\n".join(body).rstrip() + "\n"


SCAFFOLD = '''source = load()
state = {key[len(PREFIX):] if key.startswith(PREFIX) else key: value for key, value in source.items()}
holders = {}


def tensor(name):
    """(module, local name) holding tensor ``name``: a small module, so torch's pruning sees exactly that tensor."""
    name = TIED.get(name, name)
    if name not in holders:
        local = name.rpartition(".")[2]
        module = nn.Module()
        module.register_parameter(local, nn.Parameter(state[name].detach().clone(), requires_grad=False))
        holders[name] = (module, local)
    return holders[name]

'''

SAVE = '''
out = {}
for key in state:
    name = TIED.get(key, key)
    if name not in holders:
        out[PREFIX + key] = state[key]
        continue
    module, local = holders[name]
    pruned = hasattr(module, local + "_mask")
    if KEEP_MASKS and pruned:
        out[PREFIX + key + "_orig"] = getattr(module, local + "_orig").detach()
        out[PREFIX + key + "_mask"] = getattr(module, local + "_mask").detach()
    else:
        out[PREFIX + key] = getattr(module, local).detach()
{writer}
print(f"wrote {OUTPUT}")'''

WRITERS = {"torch": "torch.save(out, OUTPUT)",
           "safetensors": "save_file({k: v.contiguous().clone() for k, v in out.items()}, OUTPUT)"}

MASK_LOADER = '''def mask_for(name, path):
    """The mask of tensor ``name`` in a mask file: a single tensor, or a dict keyed by tensor name."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        masks = load_file(path)
    elif path.endswith(".npy"):
        import numpy
        masks = torch.from_numpy(numpy.load(path, allow_pickle=False))
    else:
        masks = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(masks, torch.Tensor):
        return masks
    return masks[name] if name in masks else next(iter(masks.values()))
'''
