"""Recipes: the history as JSON ``{"steps": [...]}`` that replays to identical masks.

A step is ``{"op": "prune", "method", "targets", "types"?, "amount"?, "n"?, "dim"?, "seed"?, "params"?, "mask"?}``,
``{"op": "global", "method", "targets", "types"?, "amount", "seed"?}`` or ``{"op": "remove", "targets", "types"?}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsegui import __version__
from sparsegui.core.errors import Cancelled, RecipeError, SparseGUIError
from sparsegui.core.export.atomic import atomic_write
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.steps import step_from_json

if TYPE_CHECKING:
    from sparsegui.core.document import Document
    from sparsegui.core.operations import Change

RECIPE_FORMAT = "sparsegui-recipe"
ALLOWED_KEYS = {
    "prune": {"op", "method", "targets", "types", "amount", "n", "dim", "seed", "params", "mask"},
    "global": {"op", "method", "targets", "types", "amount", "seed"},
    "remove": {"op", "targets", "types"},
}


def recipe_from_steps(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": RECIPE_FORMAT,
        "version": 1,
        "producer": f"sparsegui {__version__}",
        "steps": [dict(step) for step in steps],
    }


def save_recipe(doc: Document, path: str | Path) -> Path:
    text = json.dumps(doc.recipe(), indent=2)
    return atomic_write(path, lambda p: p.write_text(text + "\n", encoding="utf-8"), lambda p: load_recipe(p))


def load_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RecipeError(f"recipe {str(path)!r}: cannot read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeError(f"recipe {path.name}: not valid JSON ({exc})") from exc
    validate_recipe(recipe)
    return recipe


def validate_recipe(recipe: object) -> list[dict[str, Any]]:
    """Check the recipe's shape (not yet against a model); errors say which step is wrong."""
    if not isinstance(recipe, Mapping) or not isinstance(recipe.get("steps"), list):
        raise RecipeError('a recipe is a JSON object {"steps": [...]}')
    steps = recipe["steps"]
    for i, step in enumerate(steps, 1):
        if not isinstance(step, Mapping):
            raise RecipeError(f"step {i}: must be an object, got {type(step).__name__}")
        op = step.get("op")
        if op not in ALLOWED_KEYS:
            raise RecipeError(f"step {i}: unknown op {op!r}; use prune, global or remove")
        extra = set(step) - ALLOWED_KEYS[op]
        if extra:
            raise RecipeError(f"step {i}: unknown key(s) {', '.join(sorted(map(repr, extra)))} for op {op!r}")
        targets = step.get("targets")
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise RecipeError(f"step {i}: 'targets' must be a non-empty list of tensor names or patterns")
        types = step.get("types")
        if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
            raise RecipeError(f"step {i}: 'types' must be a list of module type names")
        if op in ("prune", "global") and not isinstance(step.get("method"), str):
            raise RecipeError(f"step {i}: 'method' must be a method name")
        if op == "global" and "amount" not in step:
            raise RecipeError(f"step {i}: a global step needs an 'amount'")
        seed = step.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RecipeError(f"step {i}: 'seed' must be an integer")
    return list(steps)


def plan_recipe(
    doc: Document,
    recipe: Mapping[str, Any],
    base_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[Change]:
    """Work out every step, each on the state the previous one leads to, changing nothing (any thread); a step
    that fails (or a cancel) stops it with nothing to undo."""
    steps = validate_recipe(recipe)
    changes: list[Change] = []
    state = doc.state
    for i, step in enumerate(steps, 1):
        check(cancel)
        report(progress, (i - 1) / max(len(steps), 1), f"step {i}/{len(steps)}: {step['op']}")
        try:
            change = doc.plan(step_from_json(step), base_dir=base_dir, cancel=cancel, base=state)
        except Cancelled:
            raise
        except SparseGUIError as exc:
            raise RecipeError(f"step {i} ({step['op']}): {exc}") from exc
        changes.append(change)
        state = change.after
    report(progress, 1.0, "done")
    return changes


def apply_recipe(
    doc: Document,
    recipe: Mapping[str, Any],
    base_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> int:
    """Replay every step (each one an undo step); if one fails or the user cancels, nothing is applied."""
    changes = plan_recipe(doc, recipe, base_dir, progress, cancel)
    for change in changes:
        doc.commit(change)
    return len(changes)
