"""The ``sparsegui`` command: ``sparsegui [PATH]`` opens the app; ``inspect`` and ``apply`` run headless.

Importing this module imports neither torch nor Qt: ``--version`` and ``--help`` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from sparsegui import __version__
from sparsegui.collector import quietly_importing
from sparsegui.core.errors import SparseGUIError
from sparsegui.core.paths import check_regular_input
from sparsegui.core.text import printable

SUBCOMMANDS = ("inspect", "apply", "sensitivity", "diff", "script", "methods", "devices")
USAGE = """%(prog)s [PATH] [--demo NAME] [--key KEY] [--arch PKG.MODULE:FACTORY] [--trust]
       %(prog)s {inspect,apply,sensitivity,diff,script,methods,devices} ... (%(prog)s COMMAND --help)"""
DESCRIPTION = ("See and shape sparsity in PyTorch checkpoints. 'sparsegui [PATH]' opens the desktop app on a "
               "checkpoint file or Hugging Face model folder (the lenet demo without one); the commands run headless.")


class UsageError(SparseGUIError):
    """Options that contradict each other, or an empty name where a file or setting belongs."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one ``error: …`` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        _error(f"{message} (see '{self.prog} --help')")
        raise SystemExit(2)


def _error(message: str) -> None:
    """Write ``error: MESSAGE`` as exactly one line: names from files cannot add lines or drive the terminal."""
    sys.stderr.write(f"error: {printable(message)}\n")


def check_usage(args: argparse.Namespace) -> None:
    """Refuse contradictory or empty options, and a model path that is a FIFO, socket or device, before anything
    runs (argparse only checks options one by one)."""
    for option, attr in (("-o/--output", "output"), ("--masks-out", "masks_out"), ("RECIPE", "recipe"),
                         ("--arch-path", "arch_path"), ("--arch", "arch"), ("--demo", "demo")):
        if getattr(args, attr, None) == "":
            raise UsageError(f"{option} is empty: give a name")
    if getattr(args, "arch", None) is None:
        for option, attr in (("--arch-kwargs", "arch_kwargs"), ("--arch-path", "arch_path")):
            if getattr(args, attr, None) is not None:
                raise UsageError(f"{option} needs --arch PKG.MODULE:FACTORY (it configures that architecture)")
    if getattr(args, "arch_kwargs", None):
        _check_json_object("--arch-kwargs", args.arch_kwargs)
    if getattr(args, "path", None):
        check_regular_input(args.path, "model")  # a FIFO would block the loader, /dev/zero never ends


def _check_json_object(option: str, text: str) -> None:
    """``text`` is a JSON object of modest nesting (json.loads' RecursionError and its ValueError for integers of
    thousands of digits would otherwise surface as unexpected errors)."""
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise UsageError(f"{option}: JSON nested too deeply") from exc
    except ValueError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object, e.g. '{{\"num_classes\": 10}}'")


def _size(text: str) -> int:
    """``5GB``, ``500MB``, ``2GiB``, ``1000000`` → bytes (argparse type)."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    raw = text.strip().upper().replace(" ", "")
    number = raw.rstrip("KMGIB")
    unit = raw[len(number):]
    try:
        value = int(float(number) * units[unit])
    except (ValueError, KeyError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 5GB or 500MB") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least one byte")
    return value


def _add_source(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("path", nargs="?", help="checkpoint: .pt/.pth/.bin, .safetensors(.index.json), .h5, …")
    parser.add_argument("--demo", metavar="NAME", help="a built-in demo model: lenet, resnet, transformer")
    parser.add_argument("--key", help="which state_dict of a training checkpoint (e.g. 'ema' or 'model/state_dict')")
    parser.add_argument("--arch", metavar="PKG.MODULE:FACTORY", help="build this architecture and load into it")
    parser.add_argument("--arch-kwargs", metavar="JSON", help="keyword arguments for the factory, as JSON")
    parser.add_argument("--arch-path", metavar="DIR", help="a folder to import the architecture from")
    parser.add_argument("--trust", action="store_true", help="allow files that run code (pickled modules, "
                        "TorchScript, .pt2): only for files you trust")


def _nm(text: str) -> tuple[int, int]:
    from sparsegui.core.nm import parse_nm

    try:
        return parse_nm(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    from sparsegui.cli import diff, sensitivity

    parser = _Parser(prog="sparsegui", usage=USAGE, description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"sparsegui {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, title="commands")
    inspect = sub.add_parser("inspect", help="print the module tree with sparsity")
    _add_source(inspect)
    inspect.add_argument("--json", action="store_true", help="print one JSON object for programs")
    inspect.add_argument("--nm", type=_nm, metavar="N:M", default=None,
                         help="also report each weight's N:M compliance along its input axis (N kept of every M, "
                              "e.g. 2:4): the share of groups with at most N nonzeros")
    inspect.add_argument("--sizes", action="store_true",
                         help="also report each tensor's bytes as dense, dense + 1-bit mask, CSR, 2:4 and with zero "
                              "rows/channels removed")
    inspect.add_argument("--stats-out", metavar="FILE", default=None,
                         help="also write the per-tensor table: .csv, or .json as a Netron attachment (drop it on "
                              "the model in Netron)")
    apply = sub.add_parser("apply", help="replay a recipe and export the result")
    apply.add_argument("recipe", help="a JSON recipe {\"steps\": [...]}")
    _add_source(apply)
    apply.add_argument("-o", "--output", required=True, help="where to write: a .pt, .pth, .safetensors or .h5 file, "
                       "or a new model folder (a name without extension): sharded safetensors, index and the source "
                       "folder's other files, loadable with transformers' from_pretrained")
    apply.add_argument("--mask-layout", choices=("torch", "modelopt", "asp", "llm-compressor"), default="torch",
                       help="with --keep-masks: torch's X_orig/X_mask (default), or the pruned weights with masks as "
                            "NVIDIA ModelOpt (._weight_mask), apex ASP (.__weight_mma_mask) or llm-compressor (.mask)")
    apply.add_argument("--shard-size", type=_size, default=None, metavar="SIZE",
                       help="largest shard of a model folder export, e.g. 5GB (the default), 500MB")
    apply.add_argument("--keep-masks", action="store_true", help="export *_orig/*_mask instead of a clean state_dict")
    apply.add_argument("--masks-out", metavar="FILE", help="also write the masks alone to FILE")
    apply.add_argument("--device", default="cpu", help="where to prune: cpu, cuda, cuda:N, mps")
    sensitivity.add_parser(sub, _add_source)
    diff.add_parser(sub)
    diff.add_script_parser(sub, _add_source)
    sub.add_parser("methods", help="list the pruning methods, plugins included")
    sub.add_parser("devices", help="list the devices a model can move to")
    return parser


def build_gui_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sparsegui", description="Open the SparseGUI desktop app.",
                     epilog=f"subcommands: {', '.join(SUBCOMMANDS)} (sparsegui COMMAND --help)")
    parser.add_argument("--version", action="version", version=f"sparsegui {__version__}")
    _add_source(parser)
    return parser


def parse_command(args_list: Sequence[str]) -> argparse.Namespace:
    """Parse ``COMMAND ARGS…``; options may sit between positionals (``apply R.json --trust M.pt -o OUT``)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    args = commands.choices[args_list[0]].parse_intermixed_args(list(args_list[1:]))
    args.command = args_list[0]
    check_usage(args)
    return args


def unknown_command(args_list: Sequence[str]) -> str | None:
    """A first argument that looks like a mistyped command (a bare word that is no file), or None."""
    if not args_list or args_list[0].startswith("-") or args_list[0] in SUBCOMMANDS:
        return None
    word = args_list[0]
    if Path(word).exists() or any(c in word for c in "/\\.") or not word.replace("-", "").isalpha():
        return None
    close = difflib.get_close_matches(word, SUBCOMMANDS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return (f"unknown command '{word}'{hint} Commands: {', '.join(SUBCOMMANDS)}; to open a file or folder give its "
            "path")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        mistyped = unknown_command(args_list)
        if mistyped is not None:
            raise UsageError(mistyped)
        if not {"--version", "-h", "--help"} & set(args_list):
            from sparsegui.core.safety import require_safe_torch

            require_safe_torch()
        if args_list and args_list[0] in SUBCOMMANDS:
            command = parse_command(args_list)
            # torch and the core: ~1 s of imports that leave 100 000s of objects and no garbage; collecting while
            # they pile up would walk them again and again
            run_command = quietly_importing("sparsegui.cli.commands", _command_runner)
            return run_command(command)
        if args_list and args_list[0] in ("-h", "--help") and len(args_list) == 1:
            build_parser().print_help()
            return 0
        gui_args = build_gui_parser().parse_args(args_list)  # --version and --help end here, before torch loads
        check_usage(gui_args)
        from sparsegui.cli.commands import open_app

        return open_app(gui_args)
    except SparseGUIError as exc:
        _error(str(exc))
        return 2
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:
        if os.environ.get("SPARSEGUI_DEBUG"):
            raise
        _error(f"unexpected {type(exc).__name__}: {exc} (set SPARSEGUI_DEBUG=1 for details)")
        return 1


def _command_runner() -> Callable[[argparse.Namespace], int]:
    from sparsegui.cli.commands import run_command

    return run_command


def run() -> NoReturn:
    """The ``sparsegui`` console script and ``python -m sparsegui``: :func:`main`, then the exit.

    A headless command ends with :func:`os._exit` once its output is flushed: its files are written, fsynced and
    renamed by then, and tearing the interpreter down object by object (torch's modules, the model's tensors) would
    only add a quarter of a second to every command. The app exits the ordinary way.
    """
    argv = sys.argv[1:]
    code = main(argv)
    if not (argv and argv[0] in SUBCOMMANDS):
        raise SystemExit(code)
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as in main()
        pass
    except OSError as exc:  # e.g. a full disk under a redirected stdout
        _error(f"cannot write the output ({exc.strerror or exc})")
        code = code or 1
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)


def print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


__all__ = ["Path", "build_parser", "main", "print_json", "run"]
