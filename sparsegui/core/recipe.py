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
from sparsegui.core.errors import Cancelled, RecipeError, SparseGUIError, TrustRequired
from sparsegui.core.export.atomic import atomic_write
from sparsegui.core.methods import code_needed
from sparsegui.core.progress import CancelToken, ProgressCallback, check, report
from sparsegui.core.recipe_checks import (
    MAX_RECIPE_BYTES,
    MAX_RECIPE_DEPTH,
    MAX_RECIPE_STEPS,
    RECIPE_FORMAT,
    load_recipe,
    validate_recipe,
)
from sparsegui.core.steps import step_from_json

if TYPE_CHECKING:
    from sparsegui.core.document import Document
    from sparsegui.core.operations import Change

__all__ = ["MAX_RECIPE_BYTES", "MAX_RECIPE_DEPTH", "MAX_RECIPE_STEPS", "RECIPE_FORMAT", "apply_recipe", "load_recipe",
           "plan_recipe", "recipe_from_steps", "save_recipe", "validate_recipe"]

def recipe_from_steps(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": RECIPE_FORMAT,
        "version": 1,
        "producer": f"sparsegui {__version__}",
        "steps": [dict(step) for step in steps],
    }


def save_recipe(doc: Document, path: str | Path) -> Path:
    return save_recipe_data(doc.recipe(), path)


def save_recipe_data(recipe: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``recipe`` as JSON, atomically, and read it back as a recipe before it replaces anything."""
    text = json.dumps(recipe, indent=2) + "\n"

    def write(target: Path) -> None:
        target.write_text(text, encoding="utf-8")

    def verify(target: Path) -> None:
        load_recipe(target)

    return atomic_write(path, write, verify)


def recipe_code(recipe: Mapping[str, Any], base_dir: Path | None = None) -> list[str]:
    """What replaying ``recipe`` would import or run (methods that are neither built in nor installed plugins), in
    words; empty when it runs no code. Call it on a validated recipe."""
    needed = (code_needed(step["method"], base_dir) for step in recipe["steps"] if "method" in step)
    return list(dict.fromkeys(n for n in needed if n is not None))


def require_recipe_trust(recipe: Mapping[str, Any], base_dir: Path | None, trust: bool, name: str = "recipe") -> None:
    """A recipe is data: refuse one that would import or run code, naming it, unless the user trusted it."""
    needed = [] if trust else recipe_code(recipe, base_dir)
    if needed:
        shown = "; ".join(needed[:4]) + ("…" if len(needed) > 4 else "")
        raise TrustRequired(f"{name} would {shown}; a recipe runs no code unless you trust it (--trust)", needed)


def plan_recipe(
    doc: Document,
    recipe: Mapping[str, Any],
    base_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    trust: bool = False,
) -> list[Change]:
    """Work out every step, each on the state the previous one leads to, changing nothing (any thread); a step
    that fails (or a cancel) stops it with nothing to undo. Without ``trust``, a recipe that would import or run
    code (a method that is not built in or an installed plugin) is refused before anything runs."""
    steps = validate_recipe(recipe)
    require_recipe_trust(recipe, base_dir, trust)
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
    trust: bool = False,
) -> int:
    """Replay every step (each one an undo step); if one fails or the user cancels, nothing is applied. ``trust``
    as for :func:`plan_recipe`."""
    changes = plan_recipe(doc, recipe, base_dir, progress, cancel, trust)
    for change in changes:
        doc.commit(change)
    return len(changes)
