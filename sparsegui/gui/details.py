"""Details of the selected item, as the PyTorch pruning tutorial prints them by hand.

For a module: its forward tensors with their sparsity, ``named_parameters``, ``named_buffers``, its hooks with each
pruning hook's methods in order, and its submodules. For a tensor, parameter or buffer: shape, dtype, device, numel,
zeros, sparsity and whether it is pruned. Names are links that select the item.
"""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import quote, unquote

from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QTextBrowser, QVBoxLayout, QWidget

from sparsegui.core.inspection import HookInfo, ModuleInfo, inspect_module_of
from sparsegui.core.loading.source import SourceInfo
from sparsegui.core.nm import check_groups, eligibility
from sparsegui.core.rows import Row, buffer_count, child_rows, module_row, row_count, row_norm_removed
from sparsegui.core.state import ModelState, TensorState
from sparsegui.core.stats import Count, Totals
from sparsegui.core.structure import ModelStructure
from sparsegui.gui.session import Selection, Session
from sparsegui.gui.tree_text import percent_text, qualify, shape_text, value_text

MAX_ROWS = 200
# mid greys read on light and dark palettes; text and links keep the palette's own colours
STYLE = """<style>
h3 { margin: 0 0 2px 0; }
h4 { margin: 10px 0 3px 0; }
p { margin: 0 0 6px 0; }
table { border-collapse: collapse; margin: 0 0 4px 0; }
th { border-bottom: 1px solid #8c8c8c; padding: 2px 8px 2px 0; text-align: left; font-weight: 600; }
td { border-bottom: 1px solid #6e6e6e; padding: 2px 8px 2px 0; }
.num { text-align: right; }
.muted { color: #8c8c8c; }
.warn { color: #d35400; }
</style>"""


def _link(selection: Selection, text: str) -> str:
    href = f"select:{selection.kind}/{selection.index}/{quote(selection.name, safe='')}"
    return f'<a href="{href}">{escape(text)}</a>'


def _table(headers: list[str], rows: list[list[str]], numeric: Container[int] = ()) -> str:
    """An HTML table; cells are already HTML; ``numeric`` columns are right-aligned."""
    def cell(tag: str, i: int, content: str) -> str:
        return f'<{tag} class="num">{content}</{tag}>' if i in numeric else f"<{tag}>{content}</{tag}>"

    head = "".join(cell("th", i, escape(h)) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table cellspacing="0">{head and "<tr>" + head + "</tr>"}{body}</table>'


def _pairs(rows: list[tuple[str, str]]) -> str:
    return _table([], [[f'<span class="muted">{escape(k)}</span>', v] for k, v in rows])


def amount_text(amount: object) -> str:
    if isinstance(amount, float):
        return f"{amount:g} ({amount * 100:g}%)"
    if isinstance(amount, int) and not isinstance(amount, bool):
        return f"{amount} entries"
    return "" if amount is None else escape(str(amount))


def history_table(hooks: list[HookInfo], module_name: str, all_hooks: list[HookInfo]) -> str:
    """One row per pruning method in the order applied (a hook's first row names it); other hooks one row each."""
    rows = []
    for hook in hooks:
        position = all_hooks.index(hook)
        label = _link(Selection("hook", module_name, position), f"{hook.kind}: {hook.cls}")
        tensor = escape(hook.tensor or "")
        for step, method in enumerate(hook.methods or [{}], start=1):
            shown = ("class", "amount", "n", "dim")
            other = ", ".join(f"{k}={value_text(v)}" for k, v in method.items() if k not in shown)
            rows.append([label if step == 1 else "", tensor if step == 1 else "",
                         str(step) if hook.methods else "", escape(str(method.get("class", ""))),
                         amount_text(method.get("amount")), escape(value_text(method.get("n", ""))),
                         escape(value_text(method.get("dim", ""))), escape(other)])
    headers = ["hook", "tensor", "step", "method", "amount", "n", "dim", "other"]
    keep = [i for i in range(len(headers)) if i < 4 or any(row[i] for row in rows)]
    return _table([headers[i] for i in keep], [[row[i] for i in keep] for row in rows])


def _sparsity(zeros: int | None, numel: int) -> str:
    if zeros is None:
        return f"counting zeros… ({numel:,} entries)"
    return f"{percent_text(zeros / numel if numel else 0.0)} ({zeros:,} of {numel:,} zero)"


def _percent(count: Count) -> str:
    sparsity = count.sparsity
    return "…" if count.zeros is None and count.numel else "" if sparsity is None else percent_text(sparsity)


NM_READ_LIMIT = 1 << 22
"""Tensors up to this many entries get their 2:4 compliance here at once; bigger ones in the mask view."""


def nm_rows(ts: TensorState, axes: tuple[str | None, ...]) -> list[tuple[str, str]]:
    """2:4 compliance along the input axis and which 2:4 kernels the weight's shape and dtype allow."""
    if "in" not in axes:
        return []
    dim = axes.index("in")
    shape = ts.values.shape
    if shape[dim] % 4:
        compliance = f"n/a: {shape[dim]} input features are not a multiple of 4"
    elif ts.numel <= NM_READ_LIMIT:
        share = check_groups(ts.effective() != 0, 2, 4, dim)[0]
        compliance = f"{share:.2%} of groups along dim {dim} have ≤ 2 nonzeros"
    else:
        compliance = "Mask tab ▸ Show: N:M groups (too big to read here)"
    kernels = "<br>".join(f"{'✓' if e.ok else '✗'} {escape(e.target)}: {escape(e.reason)}"
                          for e in eligibility(shape, ts.values.dtype, axes))
    note = '<br><span class="muted">A mask alone makes nothing faster or smaller: only these kernels use 2:4.</span>'
    return [("2:4 compliance", compliance), ("2:4 kernels", kernels + note)]


def _norm(value: float | None) -> str:
    """Norm removed as text: … while it is measured, n/a for a tensor holding NaN or Inf."""
    return "…" if value is None else "n/a (NaN or Inf in the weights)" if math.isnan(value) else \
        percent_text(value)


def _zeros(count: Count) -> str:
    return "…" if count.zeros is None else f"{count.zeros:,}"


@dataclass(frozen=True)
class View:
    """What a details page is read from: the structure, a state, its totals and the device."""

    structure: ModelStructure
    state: ModelState
    totals: Totals
    device: str

    @classmethod
    def of(cls, session: Session) -> View:
        doc = session.document
        return cls(doc.structure, session.state, session.totals, str(doc.device))

    def module(self, path: str) -> ModuleInfo:
        return inspect_module_of(self.structure, self.state, path, self.device, counts=False)


def module_html(view: View, name: str) -> str:
    """The page of module ``name``; counts come from ``view.totals`` ("…" until counted)."""
    info = view.module(name)
    total = view.totals.module(name)
    slot = view.structure.modules[name]
    title = escape(name or slot.type_name)
    parts = [f'<h3>{title} <span class="muted">{escape(info.type)}</span></h3>',
             f"<p>{total.numel:,} parameters{' in its subtree' if slot.children else ''} · "
             f"{_sparsity(total.zeros, total.numel) if total.numel else 'no tensors'}"
             f"{' · norm removed ' + _norm(view.totals.module_norm_removed(name)) if total.numel else ''}</p>"]
    rows = []
    for tensor in info.tensors:
        qualname = qualify(name, tensor.name)
        count = view.totals.tensor(qualname)
        pruned = "yes" if tensor.pruned else "no"
        if tensor.alias_of is not None:
            pruned += f" (tied to {_link(Selection('tensor', tensor.alias_of), tensor.alias_of)})"
        rows.append([_link(Selection("tensor", qualname), tensor.name), shape_text(tensor.shape), tensor.dtype,
                     f"{count.numel:,}", _zeros(count), _percent(count), pruned])
    if rows:
        parts += ["<h4>Forward tensors</h4>",
                  _table(["name", "shape", "dtype", "numel", "zeros", "sparsity", "pruned"], rows, {3, 4, 5})]
    if info.parameters:
        rows = [[_link(Selection("parameter", qualify(name, p.name)), p.name), shape_text(p.shape), p.dtype, p.device,
                 str(p.requires_grad)] for p in info.parameters]
        parts += ["<h4>named_parameters</h4>", _table(["name", "shape", "dtype", "device", "requires_grad"], rows)]
    if info.buffers:
        rows = [[_link(Selection("buffer", qualify(name, b.name)), b.name), shape_text(b.shape), b.dtype, b.device,
                 "yes" if b.persistent else "no"] for b in info.buffers]
        parts += ["<h4>named_buffers</h4>", _table(["name", "shape", "dtype", "device", "persistent"], rows)]
    if info.hooks:
        parts += ["<h4>Hooks</h4>", history_table(info.hooks, name, info.hooks)]
    children = [c for c in slot.children if c in view.structure.modules]
    if children:
        rows = []
        for child in children[:MAX_ROWS]:
            sub = view.totals.module(child)
            child_slot = view.structure.modules[child]
            pruned_here = sum(1 for path in _subtree(view.structure, child)
                              for _ in (view.state.layouts.get(path) or view.structure.modules[path].layout()).hooks)
            rows.append([_link(Selection("module", child), child.rpartition(".")[2]), escape(child_slot.type_name),
                         f"{sub.numel:,}", _percent(sub), str(pruned_here or "")])
        more = f'<p class="muted">… and {len(children) - MAX_ROWS:,} more</p>' if len(children) > MAX_ROWS else ""
        parts += ["<h4>Submodules</h4>",
                  _table(["name", "type", "parameters", "sparsity", "pruned tensors"], rows, {2, 3, 4}), more]
    return "".join(parts)


def _subtree(structure: ModelStructure, path: str) -> list[str]:
    prefix = f"{path}."
    return [p for p in structure.modules if p == path or p.startswith(prefix)]


def source_html(source: SourceInfo) -> str:
    """Where the model came from: file, format, chosen key, prefix, architecture, SHA-256 and load warnings."""
    origin = f"{source.demo} (built-in demo)" if source.demo else (source.path or "")
    rows = [("source", escape(origin)), ("format", escape(source.format))]
    if source.key:
        rows.append(("state_dict key", escape(source.key)))
    if source.prefix:
        rows.append(("stripped prefix", escape(source.prefix)))
    rows.append(("architecture", escape(source.arch) if source.arch else
                 f"{escape(source.architecture)} (transformers)" if source.architecture else
                 "rebuilt from the keys (kinds guessed)" if source.inferred else "the model's own classes"))
    if source.weights:
        rows.append(("weights", escape(Path(source.weights).name)))
    for key, value in source.config.items():
        rows.append((f"config: {key}", escape(value)))
    if source.sha256:
        rows.append(("SHA-256", f"<code>{source.sha256}</code>"))
    if source.trusted:
        rows.append(("trusted", "yes — opened with code execution allowed"))
    warnings = "".join(f'<p class="warn">⚠ {escape(w)}</p>' for w in source.warnings)
    return "<h4>Source</h4>" + _pairs(rows) + warnings


def tensor_html(view: View, selection: Selection) -> str:
    module_name, local = selection.module_name, selection.local_name
    slot = view.structure.modules[module_name]
    rows_of = {r.name: r for r in _rows_below(view, module_name)}
    row = rows_of.get(selection.name)
    if row is None or (row.tensor is None and row.kind != "buffer"):
        return f'<p class="muted">{escape(selection.name)} no longer exists.</p>'
    ts = view.state.tensors[row.tensor] if row.tensor is not None else None
    count = row_count(row, view.totals) if row.tensor is not None else buffer_count(view.structure, module_name, local)
    numel = count.numel if count is not None else 0
    kind = row.type_text if row.kind != "tensor" else ("tensor, pruned" if row.pruned else row.type_text)
    if row.key == ("orig",):
        kind = "raw parameter of a pruned tensor"
    elif row.key == ("mask",):
        kind = "mask buffer of a pruned tensor"
    zeros = count.zeros if count is not None else None
    rows = [("shape", shape_text(row.shape or ())), ("dtype", row.dtype), ("device", view.device),
            ("numel", f"{numel:,}"), ("zeros", "counting…" if zeros is None and count is not None else
                                     f"{zeros:,}" if zeros is not None else ""),
            ("sparsity", "…" if zeros is None and count is not None else
             percent_text(zeros / numel if numel and zeros is not None else 0.0))]
    if row.kind == "tensor":
        rows.append(("norm removed", _norm(row_norm_removed(row, view.totals))))
        if ts is not None and row.tensor is not None:
            rows += nm_rows(ts, view.structure.tensors[row.tensor].axes)
    if row.kind == "parameter":
        rows.append(("requires_grad", str(slot.requires_grad.get(local.removesuffix("_orig"), False))))
    if row.kind == "buffer" and row.key != ("mask",):
        persistent = next((b.persistent for b in slot.buffers if b.name == local), True)
        rows.append(("persistent", "yes" if persistent else "no"))
    if ts is not None and ts.scanned is not None and ts.scanned.nonfinite and row.kind == "tensor":
        rows.append(("NaN / Inf", f'<span class="warn">{ts.scanned.nonfinite:,} entries</span>'))
    stem = local.removesuffix("_orig").removesuffix("_mask") if row.kind != "tensor" else local
    if row.alias_of is not None:
        rows.append(("tied", f"the same tensor as {_link(Selection('tensor', row.alias_of), row.alias_of)}: pruning "
                             "either prunes both, and exports write it as the source did"))
    if ts is not None and ts.pruning is not None and (row.kind != "tensor" or row.pruned):
        orig, mask = f"{stem}_orig", f"{stem}_mask"
        rows += [("pruned", f"yes — the forward uses {_link(Selection('parameter', qualify(module_name, orig)), orig)}"
                            f" × {_link(Selection('buffer', qualify(module_name, mask)), mask)}"),
                 ("mask", f"{ts.pruning.mask.zeros:,} of {ts.pruning.mask.numel:,} entries removed")]
    elif ts is not None:
        rows.append(("pruned", "yes (through its tie)" if ts.pruning is not None else "no"))
    parts = [f'<h3>{escape(selection.name)} <span class="muted">{escape(kind)}</span></h3>',
             f"<p>in {_link(Selection('module', module_name), module_name or slot.type_name)} "
             f"({escape(slot.type_name)})</p>", _pairs(rows)]
    all_hooks = view.module(module_name).hooks
    mine = [h for h in all_hooks if h.tensor == stem and h.methods]
    if mine:
        parts += ["<h4>Pruning history</h4>", history_table(mine, module_name, all_hooks)]
    return "".join(parts)


def _rows_below(view: View, module_name: str) -> list[Row]:
    rows = child_rows(view.structure, view.state, module_row(view.structure, module_name))
    return rows + [r for parent in rows if parent.pruned for r in child_rows(view.structure, view.state, parent)]


def hook_html(view: View, selection: Selection) -> str:
    hooks = view.module(selection.name).hooks
    slot = view.structure.modules[selection.name]
    if selection.index >= len(hooks):
        return f'<p class="muted">That hook of {escape(selection.name or "the root")} no longer exists.</p>'
    hook = hooks[selection.index]
    where = _link(Selection("module", selection.name), selection.name or slot.type_name)
    rows = [("kind", escape(hook.kind)), ("class", escape(hook.cls)), ("module", where)]
    if hook.tensor:
        rows.append(("tensor", _link(Selection("tensor", qualify(selection.name, hook.tensor)), hook.tensor)))
    parts = [f'<h3>{escape(hook.cls)} <span class="muted">{escape(hook.kind)} hook</span></h3>', _pairs(rows)]
    if hook.methods:
        parts += ["<h4>Pruning history</h4>", history_table([hook], selection.name, hooks)]
    return "".join(parts)


def details_html(view: View, selection: list[Selection], source: SourceInfo | None = None) -> str:
    """The whole details page for the first selected item (the root module when nothing is selected)."""
    if not selection:
        body = '<p class="muted">Select a module or tensor in the tree. The whole model:</p>' + module_html(view, "")
        if source is not None:
            body += source_html(source)
    else:
        first = selection[0]
        if first.module_name not in view.structure.modules:
            body = f'<p class="muted">{escape(first.name)} no longer exists.</p>'
        elif first.kind == "module":
            body = module_html(view, first.name)
            if first.name == "" and source is not None:
                body += source_html(source)
        elif first.kind == "hook":
            body = hook_html(view, first)
        else:
            body = tensor_html(view, first)
        if len(selection) > 1:
            body += f'<p class="muted">{len(selection)} items selected; showing the first.</p>'
    return f"<html><head>{STYLE}</head><body>{body}</body></html>"


class DetailsView(QWidget):
    """A read-only page about ``session.selection[0]``, kept current on selection and model changes."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("detailsView")
        self.session = session
        self.browser = QTextBrowser(objectName="detailsBrowser")
        self.browser.setOpenLinks(False)
        self.browser.anchorClicked.connect(self._on_link)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.browser)
        session.selection_changed.connect(self.refresh)
        session.model_changed.connect(self.refresh)
        session.counts_changed.connect(self.refresh)
        session.document_replaced.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: object) -> None:
        """Re-render, keeping the scroll position when the same item is shown again."""
        bar = self.browser.verticalScrollBar()
        position = bar.value()
        self.browser.setHtml(details_html(View.of(self.session), self.session.selection, self.session.document.source))
        bar.setValue(position)

    def text(self) -> str:
        return self.browser.toPlainText()

    def _on_link(self, url: QUrl) -> None:
        text = url.toString()
        if not text.startswith("select:"):
            return
        kind, index, name = text.removeprefix("select:").split("/", 2)
        self.session.select([Selection(kind, unquote(name), int(index))])


if __name__ == "__main__":
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    preview_session = Session()
    preview_session.document.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=0)
    preview_session.document.prune("ln_structured", ["conv1.weight"], amount=0.5, n=2, dim=0)
    preview_session.select([Selection("module", "conv1")])
    view = DetailsView(preview_session)
    view.resize(720, 640)
    view.show()
    sys.exit(app.exec())
