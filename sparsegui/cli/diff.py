"""``sparsegui diff A B``: compare two checkpoints tensor by tensor."""

from __future__ import annotations

import argparse
import math

from sparsegui.core.text import printable

DESCRIPTION = """Compare two checkpoints (any formats SparseGUI opens, folders and shards included) tensor by tensor,
matched by name: status (same, changed, only_a, only_b, shape_changed), sparsity on each side, the share of entries
that changed, the relative change ‖B − A‖ / ‖A‖ and the Jaccard index of the zero entries."""



def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("diff", help="compare two checkpoints tensor by tensor", description=DESCRIPTION)
    parser.add_argument("a", help="the first checkpoint (file or model folder)")
    parser.add_argument("b", help="the second checkpoint")
    for side in ("a", "b"):
        parser.add_argument(f"--key-{side}", default=None, metavar="KEY",
                            help=f"which state_dict of {side.upper()} (a training checkpoint)")
        parser.add_argument(f"--arch-{side}", default=None, metavar="PKG.MODULE:FACTORY",
                            help=f"build this architecture for {side.upper()}")
    parser.add_argument("--trust", action="store_true", help="allow files that run code (both sides)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--csv", metavar="FILE", help="also write the table as CSV")


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}" if value >= 1e-3 or value == 0 else f"{value:.2e}"
    if isinstance(value, list):
        return "×".join(map(str, value))
    return str(value)


def cmd_diff(args: argparse.Namespace) -> int:
    from sparsegui.cli import print_json
    from sparsegui.core.diff import COLUMNS, diff_documents
    from sparsegui.core.document import Document
    from sparsegui.core.export.atomic import write_text_atomic
    from sparsegui.core.loading import LoadOptions
    from sparsegui.core.paths import check_outputs, check_regular_input

    for path in (args.a, args.b):
        check_regular_input(path, "checkpoint")
    if args.csv:
        check_outputs([args.csv], [args.a, args.b])
    a = Document.open(args.a, LoadOptions(key=args.key_a, arch=args.arch_a, trust=args.trust))
    b = Document.open(args.b, LoadOptions(key=args.key_b, arch=args.arch_b, trust=args.trust))
    result = diff_documents(a, b)
    data = result.to_json()
    if args.csv:
        write_text_atomic(args.csv, result.to_csv())
    if args.json:
        print_json(data)
        return 0
    rows = [[printable(t["name"]), t["status"], *(_cell(t[k]) for k in COLUMNS[2:])] for t in data["tensors"]]
    header = ["TENSOR", "STATUS", "SHAPE A", "SHAPE B", "SPARSITY A", "SPARSITY B", "CHANGED", "REL. CHANGE",
              "ZERO JACCARD"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [printable(f"A: {args.a}"), printable(f"B: {args.b}"), ""]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(row)))
    totals = data["totals"]
    lines += ["", f"{totals['same']} same, {totals['changed']} changed, {totals['shape_changed']} reshaped, "
                  f"{totals['only_a']} only in A, {totals['only_b']} only in B; "
                  f"{totals['changed_fraction']:.2%} of compared entries changed"]
    print("\n".join(lines))
    return 0


def add_script_parser(sub: argparse._SubParsersAction, add_source: object) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("script", help="write a recipe's session as a plain PyTorch script",
                            description="Write a standalone Python script that does what applying RECIPE to the "
                                        "model does, with torch.nn.utils.prune only (no SparseGUI import).")
    parser.add_argument("recipe", help="a JSON recipe {\"steps\": [...]}")
    add_source(parser)  # type: ignore[operator]
    parser.add_argument("-o", "--output", required=True, help="the script to write (.py)")
    parser.add_argument("--save-as", default=None, metavar="FILE",
                        help="where the script saves the pruned state_dict by default (.pt or .safetensors)")
    parser.add_argument("--keep-masks", action="store_true", help="the script saves X_orig and X_mask")


def cmd_script(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sparsegui.cli.commands import open_document
    from sparsegui.core.errors import ExportError
    from sparsegui.core.export.atomic import write_text_atomic
    from sparsegui.core.paths import check_outputs
    from sparsegui.core.recipe import apply_recipe, load_recipe, require_recipe_trust
    from sparsegui.core.script import session_script

    if not args.output.endswith(".py"):
        raise ExportError(f"{args.output}: a script is written as a .py file")
    check_outputs([args.output], [p for p in (args.recipe, args.path) if p])
    recipe_path = Path(args.recipe)
    recipe = load_recipe(recipe_path)
    require_recipe_trust(recipe, recipe_path.parent.resolve(), args.trust, f"recipe {recipe_path.name}")
    doc = open_document(args)
    apply_recipe(doc, recipe, base_dir=recipe_path.parent.resolve(), trust=args.trust)
    save_as = args.save_as or str(Path(args.output).with_suffix("")) + (
        ".safetensors" if (doc.source.weights or doc.source.path or "").endswith((".safetensors", ".json"))
        else ".pt")
    text = session_script(doc.source, doc.structure, doc.history.steps(), save_as, keep_masks=args.keep_masks,
                          base_dir=recipe_path.parent.resolve())
    write_text_atomic(args.output, text)
    print(printable(f"wrote {args.output} ({len(doc.history.steps())} step(s); it saves to {save_as})"))
    return 0
