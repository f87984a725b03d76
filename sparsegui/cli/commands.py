"""What each ``sparsegui`` subcommand does, on the same core the app uses."""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sparsegui.core.demos import DEFAULT_DEMO
from sparsegui.core.devices import list_devices
from sparsegui.core.document import Document
from sparsegui.core.errors import ExportError, LoadError
from sparsegui.core.export.folder import is_folder_target
from sparsegui.core.export.writers import format_for
from sparsegui.core.loading import LoadOptions, parse_arch_kwargs
from sparsegui.core.methods import available_methods, broken_plugins
from sparsegui.core.paths import check_outputs, check_regular_input, recipe_input_files
from sparsegui.core.recipe import apply_recipe, load_recipe, require_recipe_trust
from sparsegui.core.stats import Totals
from sparsegui.core.text import printable


def open_document(args: argparse.Namespace, default_demo: bool = False) -> Document:
    """The model named on the command line: a file (with --key/--arch/--trust) or a demo."""
    if args.path and args.demo:
        raise LoadError("give either a PATH or --demo NAME, not both")
    if args.demo or (not args.path and default_demo):
        if args.key or args.arch:
            raise LoadError("--key and --arch apply to files, not to demo models")
        return Document.demo(args.demo or DEFAULT_DEMO)
    if not args.path:
        raise LoadError("no model given: pass a PATH or --demo NAME")
    options = LoadOptions(
        key=args.key, arch=args.arch, arch_kwargs=parse_arch_kwargs(args.arch_kwargs), arch_path=args.arch_path,
        trust=args.trust,
    )
    return Document.open(args.path, options)


def cmd_inspect(args: argparse.Namespace) -> int:
    from sparsegui.cli import print_json
    from sparsegui.cli.table import render
    from sparsegui.core.inspection import add_nm_compliance, add_sizes
    from sparsegui.core.statistics import write_stats

    if args.stats_out is not None:
        if Path(args.stats_out).suffix.lower() not in (".csv", ".json"):
            raise ExportError(f"{args.stats_out}: statistics are written as .csv or as a Netron attachment .json")
        check_outputs([args.stats_out], [args.path] if args.path else [])
    doc = open_document(args)
    doc.scan()  # zeros and NaN/Inf of every tensor, one read of each
    doc.source.digest()
    report = doc.report()
    if args.nm is not None:
        add_nm_compliance(report, doc, *args.nm)
    if args.sizes:
        add_sizes(report, doc)
    if args.stats_out is not None:
        write_stats(report, args.stats_out)
    if args.json:
        print_json(report.to_json())
    else:
        print(render(report))
    return 0


def check_output(path: str, folder_ok: bool = False) -> None:
    """Refuse an output path that cannot be written before anything is done, so a bad one writes no file: an
    unknown format, a missing folder, a folder or special file (or a symlink to one) in the output's place."""
    target = Path(path)
    if not folder_ok or not is_folder_target(path):
        format_for(target)
    elif target.exists() or target.is_symlink():
        raise ExportError(f"{target}: already exists; a model folder is written to a new name, never over another")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"{target}: folder {str(folder)!r} does not exist")
    check_outputs([target])


def cmd_apply(args: argparse.Namespace) -> int:
    if args.mask_layout != "torch" and not args.keep_masks:
        raise ExportError("--mask-layout says how to write masks: add --keep-masks")
    outputs = [o for o in (args.output, args.masks_out) if o is not None]
    check_output(args.output, folder_ok=not args.keep_masks)
    if args.masks_out is not None:
        check_output(args.masks_out)
    check_outputs(outputs, [args.recipe, args.path])
    recipe_path = Path(args.recipe)
    recipe = load_recipe(recipe_path)
    require_recipe_trust(recipe, recipe_path.parent.resolve(), args.trust, f"recipe {recipe_path.name}")
    recipe_files = recipe_input_files(recipe, recipe_path.parent.resolve())
    for file in recipe_files:
        check_regular_input(file, "file named by the recipe")
    check_outputs(outputs, recipe_files)
    doc = open_document(args)
    if args.device != "cpu":
        doc.move_to(args.device)
    steps = apply_recipe(doc, recipe, base_dir=recipe_path.parent.resolve(), trust=args.trust)
    if args.device != "cpu":
        doc.move_to("cpu")
    # the summary's sparsity (only what the masks and the pruning pass did not already tell) is counted while the
    # export writes and waits for the disk: both only read the model
    with ThreadPoolExecutor(1, thread_name_prefix="sparsegui-summary") as helper:
        counted = helper.submit(doc.scan, norms=False)
        written = doc.export(args.output, keep_masks=args.keep_masks, shard_size=args.shard_size,
                             mask_layout=args.mask_layout)
        if args.masks_out:
            doc.export_masks(args.masks_out)
        counted.result()
    total = Totals(doc.structure, doc.state).total
    zeros = total.zeros or 0
    print(printable(f"applied {steps} step(s); wrote {written} ({total.numel:,} parameters, sparsity "
                    f"{zeros / total.numel * 100 if total.numel else 0.0:.2f}%)"))
    return 0


def cmd_methods(_: argparse.Namespace) -> int:
    for name, spec in available_methods().items():
        settings = [s for s, on in (("amount", spec.takes_amount), ("n", spec.takes_n), ("dim", spec.takes_dim),
                                    ("mask", spec.takes_mask), ("seed", spec.random)) if on]
        print(printable(f"{name:22} {spec.origin:28} {', '.join(settings):22} {spec.description}"))
    for name, why in broken_plugins().items():
        print(printable(f"warning: installed plugin {name} cannot be loaded ({why})"), file=sys.stderr)
    return 0


def cmd_devices(_: argparse.Namespace) -> int:
    for device in list_devices():
        memory = f"{device.total_memory / 2**30:.1f} GiB" if device.total_memory else ""
        print(f"{device.id:8} {device.name}  {memory}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from sparsegui.cli.diff import cmd_diff, cmd_script
    from sparsegui.cli.sensitivity import cmd_sensitivity

    handlers = {"inspect": cmd_inspect, "apply": cmd_apply, "sensitivity": cmd_sensitivity, "diff": cmd_diff,
                "script": cmd_script, "methods": cmd_methods, "devices": cmd_devices}
    return handlers[args.command](args)


def open_app(args: argparse.Namespace) -> int:
    """Open the desktop app on PATH (or the demo); without the GUI package, print the model's inspection."""
    try:
        from sparsegui.gui.app import run_app  # type: ignore[import-not-found]
    except ModuleNotFoundError as exc:
        if not exc.name or not exc.name.startswith("sparsegui.gui"):
            raise
        from sparsegui.cli.table import render

        doc = open_document(args, default_demo=True)
        print(render(doc.report()))
        print("\n(the desktop window is not part of this version yet; this is the model it would open)",
              file=sys.stderr)
        return 0
    return int(run_app(args))
