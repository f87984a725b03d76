"""Details of the selected item, as the PyTorch pruning tutorial prints them by hand.

For a module: its forward tensors with their sparsity, ``named_parameters``, ``named_buffers``, its hooks with each
pruning hook's methods in order, and its submodules. For a tensor, parameter or buffer: shape, dtype, device, numel,
zeros, sparsity and whether it is pruned. Names are links that select the item.
"""

from __future__ import annotations

from collections.abc import Container
from html import escape
from urllib.parse import quote, unquote

import torch
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QTextBrowser, QVBoxLayout, QWidget
from torch import nn

from sparsegui.core.inspection import HookInfo, buffer_infos, module_hooks, parameter_infos
from sparsegui.core.loading.source import SourceInfo
from sparsegui.core.pruned import forward_tensor_names, pruning_hooks
from sparsegui.core.stats import SparsityStats
from sparsegui.core.targets import module_type_name
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


def _sparsity(zeros: int, numel: int) -> str:
    return f"{percent_text(zeros / numel if numel else 0.0)} ({zeros:,} of {numel:,} zero)"


def module_html(name: str, module: nn.Module, stats: SparsityStats) -> str:
    """The page of module ``name``; counts come from ``stats`` (each tensor is counted once, not per page)."""
    kind = module_type_name(module)
    total = stats.module(name, module)
    title = escape(name or type(module).__name__)
    parts = [f'<h3>{title} <span class="muted">{escape(kind)}</span></h3>',
             f"<p>{total.numel:,} parameters{' in its subtree' if module._modules else ''} · "
             f"{_sparsity(total.zeros, total.numel) if total.numel else 'no tensors'}</p>"]
    hooks = pruning_hooks(module)
    rows = []
    for local in forward_tensor_names(module):
        tensor = getattr(module, local)
        count = stats.tensor(name, local, module)
        rows.append([_link(Selection("tensor", qualify(name, local)), local), shape_text(tensor.shape),
                     str(tensor.dtype).removeprefix("torch."), f"{count.numel:,}", f"{count.zeros:,}",
                     percent_text(count.sparsity or 0.0), "yes" if local in hooks else "no"])
    if rows:
        parts += ["<h4>Forward tensors</h4>",
                  _table(["name", "shape", "dtype", "numel", "zeros", "sparsity", "pruned"], rows, {3, 4, 5})]
    parameters, buffers, all_hooks = parameter_infos(module), buffer_infos(module), module_hooks(module)
    if parameters:
        rows = [[_link(Selection("parameter", qualify(name, p.name)), p.name), shape_text(p.shape), p.dtype, p.device,
                 str(p.requires_grad)] for p in parameters]
        parts += ["<h4>named_parameters</h4>", _table(["name", "shape", "dtype", "device", "requires_grad"], rows)]
    if buffers:
        rows = [[_link(Selection("buffer", qualify(name, b.name)), b.name), shape_text(b.shape), b.dtype, b.device,
                 "yes" if b.persistent else "no"] for b in buffers]
        parts += ["<h4>named_buffers</h4>", _table(["name", "shape", "dtype", "device", "persistent"], rows)]
    if all_hooks:
        parts += ["<h4>Hooks</h4>", history_table(all_hooks, name, all_hooks)]
    children = [(n, m) for n, m in module._modules.items() if m is not None]
    if children:
        rows = []
        for child_name, child in children[:MAX_ROWS]:
            sub = stats.module(qualify(name, child_name), child)
            rows.append([_link(Selection("module", qualify(name, child_name)), child_name),
                         escape(module_type_name(child)), f"{sub.numel:,}",
                         percent_text(sub.zeros / sub.numel) if sub.numel else "",
                         str(sum(len(pruning_hooks(m)) for m in child.modules()) or "")])
        more = f'<p class="muted">… and {len(children) - MAX_ROWS:,} more</p>' if len(children) > MAX_ROWS else ""
        parts += ["<h4>Submodules</h4>",
                  _table(["name", "type", "parameters", "sparsity", "pruned tensors"], rows, {2, 3, 4}), more]
    return "".join(parts)


def source_html(source: SourceInfo) -> str:
    """Where the model came from: file, format, chosen key, prefix, architecture, SHA-256 and load warnings."""
    origin = f"{source.demo} (built-in demo)" if source.demo else (source.path or "")
    rows = [("source", escape(origin)), ("format", escape(source.format))]
    if source.key:
        rows.append(("state_dict key", escape(source.key)))
    if source.prefix:
        rows.append(("stripped prefix", escape(source.prefix)))
    rows.append(("architecture", escape(source.arch) if source.arch else
                 "rebuilt from the keys (kinds guessed)" if source.inferred else "the model's own classes"))
    if source.sha256:
        rows.append(("SHA-256", f"<code>{source.sha256}</code>"))
    if source.trusted:
        rows.append(("trusted", "yes — opened with code execution allowed"))
    warnings = "".join(f'<p class="warn">⚠ {escape(w)}</p>' for w in source.warnings)
    return "<h4>Source</h4>" + _pairs(rows) + warnings


def tensor_html(selection: Selection, module: nn.Module, stats: SparsityStats) -> str:
    local = selection.local_name
    tensor = getattr(module, local, None)
    if not isinstance(tensor, torch.Tensor):
        return f'<p class="muted">{escape(selection.name)} no longer exists.</p>'
    hooks = pruning_hooks(module)
    stem = local.removesuffix("_orig").removesuffix("_mask")
    count = stats.tensor(selection.module_name, local, module)
    numel, zeros = count.numel, count.zeros
    kind = selection.kind
    if kind == "tensor":
        kind = "tensor, pruned" if local in hooks else "tensor"
    elif stem in hooks and local != stem:
        kind = "raw parameter of a pruned tensor" if local.endswith("_orig") else "mask buffer of a pruned tensor"
    rows = [("shape", shape_text(tensor.shape)), ("dtype", str(tensor.dtype).removeprefix("torch.")),
            ("device", str(tensor.device)), ("numel", f"{numel:,}"), ("zeros", f"{zeros:,}"),
            ("sparsity", percent_text(zeros / numel if numel else 0.0))]
    if selection.kind == "parameter":
        rows.append(("requires_grad", str(tensor.requires_grad)))
    if selection.kind == "buffer":
        rows.append(("persistent", "no" if local in module._non_persistent_buffers_set else "yes"))
    module_name = selection.module_name
    if stem in hooks:
        orig, mask = f"{stem}_orig", f"{stem}_mask"
        mask_count = stats.tensor(module_name, mask, module)
        rows += [("pruned", f"yes — the forward uses {_link(Selection('parameter', qualify(module_name, orig)), orig)}"
                            f" × {_link(Selection('buffer', qualify(module_name, mask)), mask)}"),
                 ("mask", f"{mask_count.zeros:,} of {mask_count.numel:,} entries removed")]
    else:
        rows.append(("pruned", "no"))
    parts = [f'<h3>{escape(selection.name)} <span class="muted">{escape(kind)}</span></h3>',
             f"<p>in {_link(Selection('module', module_name), module_name or type(module).__name__)} "
             f"({escape(module_type_name(module))})</p>", _pairs(rows)]
    all_hooks = module_hooks(module)
    mine = [h for h in all_hooks if h.tensor == stem and h.methods]
    if mine:
        parts += ["<h4>Pruning history</h4>", history_table(mine, module_name, all_hooks)]
    return "".join(parts)


def hook_html(selection: Selection, module: nn.Module) -> str:
    hooks = module_hooks(module)
    if selection.index >= len(hooks):
        return f'<p class="muted">That hook of {escape(selection.name or "the root")} no longer exists.</p>'
    hook = hooks[selection.index]
    where = _link(Selection("module", selection.name), selection.name or type(module).__name__)
    rows = [("kind", escape(hook.kind)), ("class", escape(hook.cls)), ("module", where)]
    if hook.tensor:
        rows.append(("tensor", _link(Selection("tensor", qualify(selection.name, hook.tensor)), hook.tensor)))
    parts = [f'<h3>{escape(hook.cls)} <span class="muted">{escape(hook.kind)} hook</span></h3>', _pairs(rows)]
    if hook.methods:
        parts += ["<h4>Pruning history</h4>", history_table([hook], selection.name, hooks)]
    return "".join(parts)


def details_html(model: nn.Module, selection: list[Selection], source: SourceInfo | None = None,
                 stats: SparsityStats | None = None) -> str:
    """The whole details page for the first selected item (the root module when nothing is selected); counts come
    from ``stats`` (a fresh count of ``model`` when None)."""
    stats = SparsityStats(model) if stats is None else stats
    if not selection:
        body = '<p class="muted">Select a module or tensor in the tree. The whole model:</p>' + module_html("", model,
                                                                                                          stats)
        if source is not None:
            body += source_html(source)
    else:
        first = selection[0]
        try:
            module = model.get_submodule(first.module_name)
        except AttributeError:
            module = None
        if module is None:
            body = f'<p class="muted">{escape(first.name)} no longer exists.</p>'
        elif first.kind == "module":
            body = module_html(first.name, module, stats)
            if first.name == "" and source is not None:
                body += source_html(source)
        elif first.kind == "hook":
            body = hook_html(first, module)
        else:
            body = tensor_html(first, module, stats)
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
        session.document_replaced.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: object) -> None:
        """Re-render, keeping the scroll position when the same item is shown again."""
        bar = self.browser.verticalScrollBar()
        position = bar.value()
        doc = self.session.document
        self.browser.setHtml(details_html(doc.model, self.session.selection, doc.source, self.session.stats))
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
