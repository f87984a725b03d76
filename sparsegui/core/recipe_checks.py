"""Reading and checking recipes as data, before any model is involved: file kind and size, JSON, field types,
budgets. Every refusal is one line naming the step and the field."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sparsegui.core.amounts import check_n
from sparsegui.core.errors import PruneError, RecipeError
from sparsegui.core.paths import kind_of

RECIPE_FORMAT = "sparsegui-recipe"
RECIPE_VERSION = 1
HEADER_KEYS = {"format", "version", "producer", "steps"}
# Budgets: a recipe is a short list of edits. These are far above any real one (a recipe SparseGUI writes holds one
# step per operation the user did, a few hundred bytes each) and low enough that a hostile file cannot make loading
# or replaying take unbounded memory or time.
MAX_RECIPE_BYTES = 16 * 1024 * 1024
MAX_RECIPE_STEPS = 10_000
MAX_RECIPE_DEPTH = 32
MAX_SEED = 2**64 - 1  # torch.manual_seed takes 0 … 2**64 - 1 (and wraps negative seeds, which recipes refuse)
ALLOWED_KEYS = {
    "prune": {"op", "method", "targets", "types", "amount", "n", "dim", "seed", "params", "mask", "keep", "group"},
    "global": {"op", "method", "targets", "types", "amount", "seed"},
    "remove": {"op", "targets", "types"},
}


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read and validate a recipe file. Refuses, with one line, before reading: anything but a regular file (a FIFO
    would block, ``/dev/zero`` never ends) and files over :data:`MAX_RECIPE_BYTES`; after reading: invalid JSON,
    duplicate keys, nesting deeper than :data:`MAX_RECIPE_DEPTH` and everything :func:`validate_recipe` refuses."""
    path = Path(path)
    data = _read_recipe_bytes(path)
    try:
        recipe = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise RecipeError(f"recipe {path.name}: key {exc.key!r} appears twice in one object") from exc
    except RecursionError as exc:
        raise RecipeError(f"recipe {path.name}: JSON nested too deeply (at most {MAX_RECIPE_DEPTH} levels)") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecipeError(f"recipe {path.name}: not valid JSON ({exc})") from exc
    validate_recipe(recipe)
    return recipe


def _read_recipe_bytes(path: Path) -> bytes:
    shown = repr(str(path))
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"recipe {shown}: cannot read ({getattr(exc, 'strerror', None) or exc})") from exc
    _check_recipe_file(shown, info)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as handle:
            _check_recipe_file(shown, os.fstat(handle.fileno()))  # the same file, even if the path changed meanwhile
            data = handle.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise RecipeError(f"recipe {shown}: cannot read ({exc.strerror or exc})") from exc
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe {shown}: larger than the {MAX_RECIPE_BYTES // 2**20} MiB a recipe may have")
    return data


def _check_recipe_file(shown: str, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise RecipeError(f"recipe {shown}: is {kind_of(info.st_mode)}, not a regular file")
    if info.st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe {shown}: {info.st_size:,} bytes, more than the {MAX_RECIPE_BYTES // 2**20} MiB "
                          "a recipe may have")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def validate_recipe(recipe: object) -> list[dict[str, Any]]:
    """Check the recipe as data (not yet against a model): its shape, each field's JSON type, the budgets. Errors
    are one line naming the step and the field."""
    if not isinstance(recipe, Mapping):
        raise RecipeError(f'a recipe is a JSON object {{"steps": [...]}}, not {_kind(recipe)}')
    if "steps" not in recipe:
        raise RecipeError('a recipe is a JSON object {"steps": [...]}: \'steps\' is missing')
    steps = recipe["steps"]
    if not isinstance(steps, list):
        raise RecipeError(f'a recipe is a JSON object {{"steps": [...]}}: \'steps\' must be a list, not {_kind(steps)}')
    _check_header(recipe)
    if len(steps) > MAX_RECIPE_STEPS:
        raise RecipeError(f"the recipe has {len(steps):,} steps; at most {MAX_RECIPE_STEPS:,} are allowed")
    _check_depth(recipe)
    for i, step in enumerate(steps, 1):
        _check_step(i, step)
    return list(steps)


def _check_header(recipe: Mapping[Any, Any]) -> None:
    extra = set(recipe) - HEADER_KEYS
    if extra:
        names = ", ".join(sorted(repr(k)[:60] for k in extra))
        raise RecipeError(f"recipe: unknown key(s) {names}; a recipe has {', '.join(sorted(HEADER_KEYS))}")
    if "format" in recipe and recipe["format"] != RECIPE_FORMAT:
        raise RecipeError(f"recipe: 'format' must be {RECIPE_FORMAT!r}, not {_show(recipe['format'])}")
    if "version" in recipe:
        version = recipe["version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise RecipeError(f"recipe: 'version' must be an integer, not {_kind(version)}")
        if version != RECIPE_VERSION:
            raise RecipeError(f"recipe: version {version} is not supported (this SparseGUI reads {RECIPE_VERSION})")
    if "producer" in recipe and not isinstance(recipe["producer"], str):
        raise RecipeError(f"recipe: 'producer' must be a string, not {_kind(recipe['producer'])}")


def _check_depth(recipe: object) -> None:
    """Refuse nesting deeper than :data:`MAX_RECIPE_DEPTH` (iteratively: a deep value must not exhaust the stack
    here, nor later when the recipe is written into an export's metadata)."""
    pending: list[tuple[object, int]] = [(recipe, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_RECIPE_DEPTH:
            raise RecipeError(f"recipe: nested too deeply (at most {MAX_RECIPE_DEPTH} levels)")
        if isinstance(value, Mapping):
            pending.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend((v, depth + 1) for v in value)


def _check_step(i: int, step: object) -> None:
    if not isinstance(step, Mapping):
        raise RecipeError(f"step {i}: must be an object, got {_kind(step)}")
    op = step.get("op")
    if not isinstance(op, str) or op not in ALLOWED_KEYS:
        raise RecipeError(f"step {i}: unknown op {_show(op)}; use prune, global or remove")
    extra = set(step) - ALLOWED_KEYS[op]
    if extra:
        raise RecipeError(f"step {i}: unknown key(s) {', '.join(sorted(repr(k)[:60] for k in extra))} for op {op!r}")
    if "targets" not in step:
        raise RecipeError(f"step {i}: 'targets' must be a non-empty list of tensor names or patterns (missing)")
    if op in ("prune", "global") and "method" not in step:
        raise RecipeError(f"step {i}: 'method' must be a method name (missing)")
    if op == "global" and "amount" not in step:
        raise RecipeError(f"step {i}: a global step needs an 'amount'")
    for key, value in step.items():
        if key != "op":
            _FIELDS[key](i, value)


def _kind(value: object) -> str:
    """The JSON type of ``value`` in words (never its repr, which may be huge or deeply nested)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _show(value: object) -> str:
    """A scalar's repr (cut to 60 characters), or the JSON type of anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return _kind(value)


def _bad(i: int, key: str, want: str, value: object) -> RecipeError:
    return RecipeError(f"step {i}: '{key}' must be {want}, not {_show(value)}")


def _name_ok(value: object) -> bool:
    return isinstance(value, str) and bool(value) and "\0" not in value


def _check_method(i: int, value: object) -> None:
    if not _name_ok(value):
        raise _bad(i, "method", "a method name", value)


def _check_targets(i: int, value: object) -> None:
    if not isinstance(value, list) or not value or not all(_name_ok(t) for t in value):
        raise _bad(i, "targets", "a non-empty list of tensor names or patterns", value)


def _check_types(i: int, value: object) -> None:
    if not isinstance(value, list) or not all(_name_ok(t) for t in value):
        raise _bad(i, "types", "a list of module type names", value)


def _check_amount(i: int, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(i, "amount", "a number (a fraction in [0, 1] or a count of entries)", value)


def _check_n(i: int, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _bad(i, "n", "a number or one of 'inf', '-inf', 'fro', 'nuc'", value)
    try:
        check_n(value)
    except PruneError as exc:
        raise RecipeError(f"step {i}: 'n': {exc}") from exc


def _check_dim(i: int, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(i, "dim", "an integer", value)


def _check_seed(i: int, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise _bad(i, "seed", f"an integer from 0 to {MAX_SEED}", value)


def _check_params(i: int, value: object) -> None:
    if not isinstance(value, Mapping):
        raise _bad(i, "params", "an object of method settings", value)
    bad = next((k for k in value if not _name_ok(k)), None)
    if bad is not None or any(not isinstance(k, str) for k in value):
        raise RecipeError(f"step {i}: 'params' keys must be setting names, not {_show(bad)}")


def _check_mask(i: int, value: object) -> None:
    if not _name_ok(value):
        raise _bad(i, "mask", "the name of a mask file", value)


def _check_count(key: str) -> Callable[[int, Any], None]:
    def check(i: int, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_GROUP:
            raise _bad(i, key, f"a whole number from 1 to {MAX_GROUP}", value)
    return check


MAX_GROUP = 1 << 16

_FIELDS = {"method": _check_method, "targets": _check_targets, "types": _check_types, "amount": _check_amount,
           "n": _check_n, "dim": _check_dim, "seed": _check_seed, "params": _check_params, "mask": _check_mask,
           "keep": _check_count("keep"), "group": _check_count("group")}


