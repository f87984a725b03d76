"""The human-readable ``sparsegui inspect`` table.

Every name in it comes from the file (module, tensor and key names, the path, pruning settings, warnings) and goes
through :func:`~sparsegui.core.text.printable`: a name cannot drive the terminal or add a line to the table.
"""

from __future__ import annotations

from sparsegui.core.inspection import HookInfo, ModelReport
from sparsegui.core.text import printable


def _shape(shape: list[int]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def _method(record: dict[str, object]) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in record.items() if k != "class")
    return printable(f"{record['class']}({settings})")


def _pruning(hooks: list[HookInfo], tensor: str) -> str:
    for hook in hooks:
        if hook.tensor == tensor and hook.methods:
            return " → ".join(_method(m) for m in hook.methods)
    return ""


def _tied(alias_of: str | None) -> str:
    return printable(f"(tied to {alias_of}: counted there)") if alias_of else ""


def source_line(report: ModelReport) -> str:
    src = report.source
    origin = f"{src['demo']} (demo)" if src.get("demo") else f"{src.get('path')} ({src.get('format')})"
    origin = printable(origin)
    if src.get("key"):
        origin += printable(f" key {src['key']!r}")
    if src.get("prefix"):
        origin += printable(f" prefix {src['prefix']!r}")
    if src.get("arch"):
        origin += printable(f" arch {src['arch']}")
    elif src.get("architecture"):
        origin += printable(f", {src['architecture']} (transformers)")
    elif src.get("inferred"):
        origin += ", module tree rebuilt from keys (kinds guessed)"
    config = src.get("config") or {}
    if config:
        origin += "\nconfig " + printable(", ".join(f"{k}={v}" for k, v in config.items() if k != "architectures"))
    if src.get("sha256"):
        origin += f"\nsha256 {printable(src['sha256'])}"
    return (
        f"{origin}\n{report.parameters:,} parameters, {report.zeros:,} zeros, "
        f"sparsity {report.sparsity * 100:.2f}%"
    )


def render(report: ModelReport) -> str:
    """A table of every tensor, its module, shape, zeros, sparsity and pruning history."""
    nm = report.nm is not None
    header = ("MODULE", "TYPE", "TENSOR", "SHAPE", "NUMEL", "ZEROS", "SPARSITY", *((f"{report.nm} OK",) if nm else ()),
              "PRUNING")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for module in report.modules:
        for tensor in module.tensors:
            compliance = () if not nm else \
                ("" if tensor.nm_compliance is None else f"{tensor.nm_compliance * 100:.2f}%",)
            rows.append((
                printable(module.name or "(root)"), printable(module.type), printable(tensor.name),
                _shape(tensor.shape), f"{tensor.numel:,}", f"{tensor.zeros:,}", f"{tensor.sparsity * 100:.2f}%",
                *compliance, _pruning(module.hooks, tensor.name) or _tied(tensor.alias_of),
            ))
        for hook in module.hooks:
            if hook.tensor is None:
                notes.append(printable(f"  {module.name or '(root)'}: {hook.kind} hook {hook.cls}"))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    right = {4, 5, 6, 7} if nm else {4, 5, 6}

    def line(row: tuple[str, ...]) -> str:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row[:-1])]
        return ("  ".join(cells) + "  " + row[-1]).rstrip()

    out = [source_line(report), "", line(header), *map(line, rows)]
    for warning in report.source.get("warnings", []):
        out.append(f"warning: {printable(warning)}")
    if notes:
        out += ["", "other hooks:", *notes]
    return "\n".join(out)
