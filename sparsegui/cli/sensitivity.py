"""``sparsegui sensitivity``: a sensitivity scan of the chosen tensors, and optionally a plan for a target."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparsegui.core.errors import SparseGUIError
from sparsegui.core.paths import check_outputs
from sparsegui.core.text import printable

DESCRIPTION = """Prune each chosen tensor alone at each level with one method and print what it costs: the norm
removed, or with --inputs the output drift ‖f_pruned(x) − f(x)‖ / ‖f(x)‖ on your sample inputs. The model is left as
it was. With --target, also plan per-tensor amounts that reach that overall sparsity with the least summed signal
on the scan (never more than uniform pruning's), and write them as a recipe with --plan-out."""


def add_parser(sub: argparse._SubParsersAction, add_source: object) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("sensitivity", help="what pruning each tensor costs, level by level",
                            description=DESCRIPTION)
    add_source(parser)  # type: ignore[operator]
    parser.add_argument("--targets", nargs="+", default=["*.weight"], metavar="NAME",
                        help="tensor names or glob patterns (default: every weight)")
    parser.add_argument("--types", nargs="+", default=None, metavar="TYPE", help="only tensors of these module types")
    parser.add_argument("--levels", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
                        help="amounts to try, fractions separated by commas")
    parser.add_argument("--method", default="l1_unstructured", help="a pruning method that takes an amount")
    parser.add_argument("--n", default=None, help="the norm of ln_structured")
    parser.add_argument("--dim", type=int, default=None, help="the dim of structured methods")
    parser.add_argument("--seed", type=int, default=None, help="the seed of random methods (recorded)")
    parser.add_argument("--inputs", metavar="FILE", help="sample inputs (.pt or .safetensors: a tensor, a tuple or a "
                        "dict of keyword tensors): the signal becomes output drift")
    parser.add_argument("--device", default="cpu", help="where to run the forward passes (cpu, cuda, cuda:1, mps)")
    parser.add_argument("--json", action="store_true", help="print the scan (and plan) as one JSON object")
    parser.add_argument("--csv", metavar="FILE", help="also write the scan as CSV: parameter,sparsity,signal")
    parser.add_argument("--target", type=float, default=None, help="plan per-tensor amounts for this overall "
                        "sparsity of the scanned tensors (0–1)")
    parser.add_argument("--plan-out", metavar="FILE", help="write the plan as a recipe (needs --target)")


def _n(text: str | None) -> object:
    if text is None:
        return None
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return text


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from sparsegui.cli.commands import open_document
    from sparsegui.core.export.atomic import write_text_atomic
    from sparsegui.core.inputs import load_inputs
    from sparsegui.core.plan import make_plan
    from sparsegui.core.recipe import load_recipe
    from sparsegui.core.sensitivity import parse_levels, scan

    if args.plan_out is not None and args.target is None:
        raise SparseGUIError("--plan-out needs --target, the overall sparsity to plan for")
    outputs = [Path(o) for o in (args.csv, args.plan_out) if o is not None]
    for output in outputs:
        if not output.parent.is_dir() and str(output.parent):
            raise SparseGUIError(f"{output}: folder {str(output.parent)!r} does not exist")
    check_outputs(outputs, [p for p in (args.path, args.inputs) if p is not None])
    levels = parse_levels(args.levels)
    inputs = load_inputs(args.inputs) if args.inputs else None
    doc = open_document(args)
    if args.device != "cpu":
        doc.move_to(args.device)
    result = scan(doc, args.targets, levels, args.method, types=args.types, n=_n(args.n), dim=args.dim,
                  seed=args.seed, inputs=inputs)
    plan = make_plan(result, doc.state, args.target) if args.target is not None else None
    if args.csv:
        text = result.to_csv()
        write_text_atomic(args.csv, text)
    if args.plan_out and plan is not None:
        recipe = plan.recipe()
        text = json.dumps(recipe, indent=2) + "\n"
        write_text_atomic(args.plan_out, text, load_recipe)
    if args.json:
        from sparsegui.cli import print_json

        out = result.to_json()
        if plan is not None:
            out["plan"] = plan.to_json()
        print_json(out)
        return 0
    print(render(result, plan))
    return 0


def render(result: object, plan: object = None) -> str:
    """The scan as a table: a row per tensor, a column per level; the plan's amounts beside it."""
    from sparsegui.core.plan import Plan
    from sparsegui.core.sensitivity import Sensitivity

    assert isinstance(result, Sensitivity)
    header = ["TENSOR", *(f"{level:g}" for level in result.levels)]
    planned = plan.sparsity() if isinstance(plan, Plan) else {}
    if planned:
        header.append("PLAN")
    rows = []
    for curve in result.curves:
        cells = [printable(curve.name), *(f"{v:.4f}" for v in curve.values)]
        if planned:
            cells.append(f"{planned[curve.name] * 100:.1f}%")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"{result.signal} of {result.method} at each level (share of each tensor's remaining entries)", ""]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))
    if isinstance(plan, Plan):
        lines += ["", f"plan for {plan.target:.2%} overall: {plan.rule}; summed {plan.signal} "
                      f"{plan.planned_signal:.4f} (uniform: {plan.uniform_signal:.4f})"]
    return "\n".join(lines)
