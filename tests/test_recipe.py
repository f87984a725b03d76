"""Recipes: a document's history as JSON that replays on a fresh model to identical masks, bit for bit."""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from sparsegui.core.document import Document
from sparsegui.core.errors import Cancelled, RecipeError
from sparsegui.core.export import masks_dict
from sparsegui.core.progress import CancelToken
from sparsegui.core.pruned import effective_tensor, method_history, pruning_hooks
from sparsegui.core.recipe import (
    RECIPE_FORMAT,
    apply_recipe,
    load_recipe,
    save_recipe,
    validate_recipe,
)
from tests.helpers import assert_same_state, bits, full_state

PLUGIN_SOURCE = textwrap.dedent(
    '''
    """A test plugin file: one deterministic and one random pruning method."""

    import torch
    from torch.nn.utils import prune


    class EveryThird(prune.BasePruningMethod):
        """Prune every third entry."""

        PRUNING_TYPE = "unstructured"

        def compute_mask(self, t, default_mask):
            mask = default_mask.clone()
            mask.view(-1)[::3] = 0
            return mask


    class RandomHalf(prune.BasePruningMethod):
        """Prune a random half of the entries (draws from torch's global generator)."""

        PRUNING_TYPE = "unstructured"
        RANDOM = True

        def compute_mask(self, t, default_mask):
            return default_mask * (torch.rand_like(t) < 0.5).to(default_mask.dtype)


    class FailsOnBig(prune.BasePruningMethod):
        """Works on small tensors, raises on big ones (a failure midway through a step)."""

        PRUNING_TYPE = "unstructured"

        def compute_mask(self, t, default_mask):
            if t.numel() > 1000:
                raise RuntimeError("too big for this plugin")
            mask = default_mask.clone()
            mask.view(-1)[0] = 0
            return mask
    '''
)


def effective_bits(doc: Document) -> dict[str, torch.Tensor]:
    """Every tensor the forward uses (``X_orig * X_mask`` when pruned), as raw bytes."""
    out = {}
    for name, module in doc.model.named_modules():
        for tensor in module._parameters:
            if module._parameters[tensor] is None:
                continue
            local = tensor.removesuffix("_orig") if tensor.removesuffix("_orig") in pruning_hooks(module) else tensor
            out[f"{name}.{local}" if name else local] = bits(effective_tensor(module, local)).clone()
    return out


def assert_replays_identically(doc: Document, demo: str = "lenet", base_dir: Path | None = None) -> Document:
    """Replay ``doc``'s recipe (through JSON) on a fresh demo and check masks, weights and hooks bit for bit."""
    recipe = json.loads(json.dumps(doc.recipe()))
    torch.manual_seed(12345)  # the replay must not depend on the global random state
    fresh = Document.demo(demo)
    assert apply_recipe(fresh, recipe, base_dir=base_dir) == len(recipe["steps"])
    assert_same_state(full_state(doc.model), full_state(fresh.model))
    masks_a, masks_b = masks_dict(doc.model), masks_dict(fresh.model)
    assert masks_a.keys() == masks_b.keys()
    for key in masks_a:
        assert torch.equal(masks_a[key], masks_b[key]), key
    eff_a, eff_b = effective_bits(doc), effective_bits(fresh)
    assert eff_a.keys() == eff_b.keys()
    for key in eff_a:
        assert torch.equal(eff_a[key], eff_b[key]), key
    assert fresh.recipe()["steps"] == recipe["steps"]
    return fresh


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    path = folder / "myplug.py"
    path.write_text(PLUGIN_SOURCE, encoding="utf-8")
    return path


# -- recording and replaying ---------------------------------------------------------------------------------------


def test_recipe_shape(lenet_doc: Document) -> None:
    """doc.recipe() is a JSON-serialisable object with format, version, producer and one step per done command."""
    lenet_doc.prune("l1_unstructured", ["conv1.weight"], amount=0.5)
    recipe = lenet_doc.recipe()
    assert recipe["format"] == RECIPE_FORMAT
    assert recipe["version"] == 1
    assert recipe["producer"].startswith("sparsegui ")
    assert recipe["steps"] == [
        {"op": "prune", "method": "l1_unstructured", "targets": ["conv1.weight"], "amount": 0.5}
    ]
    assert json.loads(json.dumps(recipe)) == recipe
    assert validate_recipe(recipe) == recipe["steps"]


def test_builtin_methods_replay_bit_for_bit(lenet_doc: Document) -> None:
    """Every built-in method, pruned repeatedly and given no seed, replays to identical masks and weights."""
    doc = lenet_doc
    doc.prune("l1_unstructured", ["conv1.weight"], amount=0.3)
    doc.prune("random_unstructured", ["fc1.weight", "fc1.bias"], amount=0.5)
    doc.prune("ln_structured", ["conv2.weight"], amount=0.25, n=2, dim=0)
    doc.prune("random_structured", ["fc2.weight"], amount=3, dim=1)
    doc.prune("identity", ["fc3.bias"])
    doc.prune("l1_unstructured", ["conv1.weight"], amount=0.2)  # a PruningContainer on conv1.weight
    doc.prune("ln_structured", ["fc3.weight"], amount=0.5, n="inf", dim=1)
    steps = doc.recipe()["steps"]
    assert len(steps) == 7
    for step in steps:
        random = step["method"].startswith("random")
        assert ("seed" in step) is random, step
        if random:
            assert isinstance(step["seed"], int) and not isinstance(step["seed"], bool)
    assert [m["class"] for m in method_history(pruning_hooks(doc.model.conv1)["weight"])] == ["L1Unstructured"] * 2
    assert_replays_identically(doc)


def test_recorded_seed_is_what_makes_random_replay_identical(lenet_doc: Document) -> None:
    """Changing the recorded seed of a random step changes the replayed mask (the seed, not luck, decides)."""
    lenet_doc.prune("random_unstructured", ["fc1.weight"], amount=0.5)
    recipe = copy.deepcopy(lenet_doc.recipe())
    recipe["steps"][0]["seed"] += 1
    other = Document.demo("lenet")
    apply_recipe(other, recipe)
    assert not torch.equal(masks_dict(lenet_doc.model)["fc1.weight"], masks_dict(other.model)["fc1.weight"])


def test_explicit_seed_is_recorded_as_given(lenet_doc: Document) -> None:
    """A seed the user gives is recorded unchanged, and the same seed twice gives the same mask."""
    lenet_doc.prune("random_unstructured", ["fc2.weight"], amount=0.4, seed=7)
    assert lenet_doc.recipe()["steps"][0]["seed"] == 7
    other = Document.demo("lenet")
    other.prune("random_unstructured", ["fc2.weight"], amount=0.4, seed=7)
    assert torch.equal(masks_dict(lenet_doc.model)["fc2.weight"], masks_dict(other.model)["fc2.weight"])


def test_global_steps_replay_bit_for_bit(lenet_doc: Document) -> None:
    """Global l1 and global random (seed recorded though none was given) replay to identical masks."""
    lenet_doc.global_prune("l1_unstructured", ["conv*.weight", "fc*.weight"], 0.4)
    lenet_doc.global_prune("random_unstructured", ["fc2.weight", "fc3.weight", "fc3.bias"], 0.3)
    lenet_doc.global_prune("l1_unstructured", ["*.bias"], 10)
    steps = lenet_doc.recipe()["steps"]
    assert steps[0] == {
        "op": "global", "method": "l1_unstructured", "amount": 0.4,
        "targets": ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"],
    }
    assert "seed" not in steps[0] and "seed" not in steps[2]
    assert isinstance(steps[1]["seed"], int)
    report = lenet_doc.report()
    assert sum(report.tensor(t).zeros for t in ["conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias", "fc3.bias"]) >= 10
    assert_replays_identically(lenet_doc)


def test_remove_steps_replay_bit_for_bit(lenet_doc: Document) -> None:
    """Prune, remove (pruning made permanent) and prune again replays to the same weights, hooks and masks."""
    lenet_doc.prune("random_unstructured", ["conv1.weight", "fc1.weight"], amount=0.5)
    lenet_doc.remove(["conv1.weight"])
    lenet_doc.prune("l1_unstructured", ["conv1.weight"], amount=0.7)
    lenet_doc.remove(["*"])
    steps = lenet_doc.recipe()["steps"]
    assert steps[1] == {"op": "remove", "targets": ["conv1.weight"]}
    assert steps[3] == {"op": "remove", "targets": ["conv1.weight", "fc1.weight"]}
    assert all(not pruning_hooks(m) for m in lenet_doc.model.modules())
    assert lenet_doc.report().tensor("conv1.weight").zeros == round(0.7 * 54)
    fresh = assert_replays_identically(lenet_doc)
    assert sorted(fresh.model.state_dict()) == sorted(Document.demo("lenet").model.state_dict())  # no _orig/_mask


def test_entry_point_and_dotted_plugins_replay(lenet_doc: Document) -> None:
    """foobar by entry-point name and by 'package.module:Class' is recorded with a seed and replays exactly."""
    lenet_doc.prune("foobar", ["conv1.weight"])
    lenet_doc.prune("sparsegui.plugins.foobar:FooBarPruningMethod", ["fc3.weight", "conv1.weight"])
    steps = lenet_doc.recipe()["steps"]
    assert steps[0]["method"] == "foobar"
    assert steps[1]["method"] == "sparsegui.plugins.foobar:FooBarPruningMethod"
    assert all(isinstance(s["seed"], int) for s in steps)
    weight = lenet_doc.report().tensor("fc3.weight")
    assert weight.zeros == (weight.numel + 1) // 2
    # every other entry, then every other of the 27 left: 27 + 14 zeros
    assert lenet_doc.report().tensor("conv1.weight").zeros == 41
    assert_replays_identically(lenet_doc)


def test_hand_written_plugin_names_give_the_tutorials_mask() -> None:
    """A hand-written recipe naming foobar both ways prunes every other entry, as the tutorial's method does."""
    doc = Document.demo("lenet")
    recipe = {"steps": [
        {"op": "prune", "method": "foobar", "targets": ["fc3.bias"]},
        {"op": "prune", "method": "sparsegui.plugins.foobar:FooBarPruningMethod", "targets": ["fc2.bias"]},
    ]}
    apply_recipe(doc, recipe)
    for name, size in (("fc3.bias", 10), ("fc2.bias", 84)):
        expected = torch.ones(size)
        expected[::2] = 0
        assert torch.equal(masks_dict(doc.model)[name], expected.bool()), name


def test_plugin_file_relative_to_recipe(tmp_path: Path, plugin_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 'file.py:Class' method is found relative to the recipe's folder, not the working directory."""
    recipe_path = tmp_path / "recipe.json"
    recipe_path.write_text(json.dumps({"steps": [
        {"op": "prune", "method": "plugins/myplug.py:EveryThird", "targets": ["fc3.weight"]},
        {"op": "prune", "method": "plugins/myplug.py:RandomHalf", "targets": ["fc2.weight"], "seed": 3},
    ]}), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    doc = Document.demo("lenet")
    assert apply_recipe(doc, load_recipe(recipe_path), base_dir=recipe_path.parent, trust=True) == 2
    expected = torch.ones(10, 84)
    expected.view(-1)[::3] = 0
    assert torch.equal(masks_dict(doc.model)["fc3.weight"], expected.bool())
    assert 0 < doc.report().tensor("fc2.weight").zeros < 120 * 84
    steps = doc.recipe()["steps"]
    assert steps[0]["method"] == f"{plugin_file.resolve()}:EveryThird"
    assert steps[1]["seed"] == 3
    # without the recipe's folder the relative file name means nothing
    with pytest.raises(RecipeError, match="step 1"):
        apply_recipe(Document.demo("lenet"), load_recipe(recipe_path), trust=True)


def test_plugin_file_recorded_recipe_replays(tmp_path: Path, plugin_file: Path) -> None:
    """A random method from a plugin file gets a recorded seed and its recipe replays bit for bit."""
    doc = Document.demo("lenet")
    doc.prune("plugins/myplug.py:RandomHalf", ["fc1.weight", "conv2.weight"], base_dir=tmp_path)
    doc.prune(f"{plugin_file}:EveryThird", ["fc1.weight"])
    step = doc.recipe()["steps"][0]
    assert step["method"] == f"{plugin_file.resolve()}:RandomHalf"
    assert isinstance(step["seed"], int)
    assert_replays_identically(doc)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".h5"])
def test_custom_from_mask_with_exported_masks(tmp_path: Path, suffix: str) -> None:
    """custom_from_mask with export_masks' file replays exactly, by recorded (absolute) or recipe-relative path."""
    source = Document.demo("lenet")
    source.prune("random_unstructured", ["conv1.weight", "fc1.weight"], amount=0.6)
    mask_file = source.export_masks(tmp_path / f"masks{suffix}")
    wanted = masks_dict(source.model)

    doc = Document.demo("lenet")
    doc.prune("custom_from_mask", ["conv1.weight", "fc1.weight"], mask=mask_file.name, base_dir=tmp_path)
    assert doc.recipe()["steps"][0]["mask"] == str(mask_file.resolve())
    for key in wanted:
        assert torch.equal(masks_dict(doc.model)[key], wanted[key]), key
    assert_replays_identically(doc)

    sub = tmp_path / "recipes"
    sub.mkdir()
    recipe_path = sub / "r.json"
    recipe_path.write_text(json.dumps({"steps": [
        {"op": "prune", "method": "custom_from_mask", "targets": ["fc1.weight", "conv1.weight"],
         "mask": f"../masks{suffix}"},
    ]}), encoding="utf-8")
    other = Document.demo("lenet")
    apply_recipe(other, load_recipe(recipe_path), base_dir=sub)
    assert_same_state(full_state(doc.model), full_state(other.model))


def test_undone_steps_are_not_recorded(lenet_doc: Document) -> None:
    """The recipe holds only the steps currently done: undone ones vanish, a new step after undo replaces them."""
    lenet_doc.prune("l1_unstructured", ["conv1.weight"], amount=0.5)
    lenet_doc.prune("random_unstructured", ["fc1.weight"], amount=0.5)
    lenet_doc.prune("l1_unstructured", ["fc2.weight"], amount=0.5)
    first_two = copy.deepcopy(lenet_doc.recipe()["steps"][:2])
    lenet_doc.undo()
    assert lenet_doc.recipe()["steps"] == first_two
    lenet_doc.undo()
    lenet_doc.undo()
    assert lenet_doc.recipe()["steps"] == []
    lenet_doc.redo()
    lenet_doc.prune("foobar", ["fc3.weight"])
    steps = lenet_doc.recipe()["steps"]
    assert [s["method"] for s in steps] == ["l1_unstructured", "foobar"]
    assert_replays_identically(lenet_doc)


def test_globs_and_types_expand_to_model_order() -> None:
    """Glob targets narrowed by types expand to the matching tensors in model order, and are recorded expanded."""
    doc = Document.demo("resnet")
    recipe = {"steps": [
        {"op": "prune", "method": "l1_unstructured", "targets": ["layer1.*"], "types": ["Conv2d"], "amount": 0.5},
        {"op": "prune", "method": "l1_unstructured", "targets": ["layer1.*.weight"], "types": ["BatchNorm2d"],
         "amount": 1},
        {"op": "global", "method": "l1_unstructured", "targets": ["*"], "types": ["Linear"], "amount": 0.5},
        {"op": "remove", "targets": ["layer1.?.bn*.weight"]},
    ]}
    apply_recipe(doc, recipe)
    steps = doc.recipe()["steps"]
    assert steps[0]["targets"] == [
        "layer1.0.conv1.weight", "layer1.0.conv2.weight", "layer1.1.conv1.weight", "layer1.1.conv2.weight",
    ]
    assert steps[1]["targets"] == [
        "layer1.0.bn1.weight", "layer1.0.bn2.weight", "layer1.1.bn1.weight", "layer1.1.bn2.weight",
    ]
    assert steps[2]["targets"] == ["fc.weight", "fc.bias"]
    assert steps[3]["targets"] == steps[1]["targets"]
    report = doc.report()
    assert report.tensor("layer1.0.conv1.weight").zeros == 32 * 32 * 9 // 2
    assert report.tensor("layer2.0.conv1.weight").zeros == 0
    assert not report.tensor("layer1.0.bn1.weight").pruned
    assert report.tensor("layer1.0.bn1.weight").zeros == 1
    assert report.tensor("layer2.0.bn1.weight").zeros == 0
    assert_replays_identically(doc, "resnet")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"op": "prune", "method": "l1_unstructured", "targets": ["nope.weight"], "amount": 0.5}, "nope.weight"),
        ({"op": "prune", "method": "l1_unstructured", "targets": ["conv*"], "types": ["Linear"], "amount": 0.5},
         "Linear"),
        ({"op": "remove", "targets": ["fc1.weight"]}, "not pruned"),
    ],
)
def test_targets_that_match_nothing_are_refused(lenet_doc: Document, step: dict[str, Any], message: str) -> None:
    """A name or pattern that matches no (suitable) tensor fails its step with a message naming it."""
    with pytest.raises(RecipeError, match="step 1") as info:
        apply_recipe(lenet_doc, {"steps": [step]})
    assert message in str(info.value)
    assert lenet_doc.recipe()["steps"] == []


# -- validation ----------------------------------------------------------------------------------------------------

PRUNE = {"op": "prune", "method": "l1_unstructured", "targets": ["conv1.weight"], "amount": 0.5}


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ([PRUNE], "JSON object"),
        ("steps", "JSON object"),
        (None, "JSON object"),
        ({}, "JSON object"),
        ({"steps": {"op": "prune"}}, "JSON object"),
        ({"steps": "prune"}, "JSON object"),
        ({"steps": [PRUNE, "prune"]}, "step 2"),
        ({"steps": [PRUNE, {"op": "squash", "targets": ["fc1.weight"]}]}, "step 2: unknown op 'squash'"),
        ({"steps": [{"method": "l1_unstructured", "targets": ["fc1.weight"]}]}, "step 1: unknown op None"),
        ({"steps": [PRUNE, PRUNE, {**PRUNE, "amont": 0.5}]}, "step 3: unknown key(s) 'amont'"),
        ({"steps": [{"op": "remove", "targets": ["fc1.weight"], "amount": 0.5}]}, "step 1: unknown key(s) 'amount'"),
        ({"steps": [{**PRUNE, "targets": []}]}, "step 1: 'targets'"),
        ({"steps": [{**PRUNE, "targets": "conv1.weight"}]}, "step 1: 'targets'"),
        ({"steps": [{**PRUNE, "targets": ["conv1.weight", 3]}]}, "step 1: 'targets'"),
        ({"steps": [{"op": "remove"}]}, "step 1: 'targets'"),
        ({"steps": [PRUNE, {**PRUNE, "types": "Conv2d"}]}, "step 2: 'types'"),
        ({"steps": [{"op": "prune", "targets": ["fc1.weight"]}]}, "step 1: 'method'"),
        ({"steps": [{"op": "global", "method": 3, "targets": ["fc1.weight"], "amount": 0.1}]}, "step 1: 'method'"),
        ({"steps": [{"op": "global", "method": "l1_unstructured", "targets": ["fc1.weight"]}]}, "step 1: a global"),
        ({"steps": [{**PRUNE, "seed": "42"}]}, "step 1: 'seed'"),
        ({"steps": [{**PRUNE, "seed": 4.0}]}, "step 1: 'seed'"),
        ({"steps": [PRUNE, {**PRUNE, "seed": True}]}, "step 2: 'seed'"),
    ],
)
def test_validate_recipe_rejects_malformed(recipe: object, message: str) -> None:
    """validate_recipe raises a RecipeError naming the step (and the bad key) for every malformed shape."""
    with pytest.raises(RecipeError) as info:
        validate_recipe(recipe)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_recipe_changes_nothing(lenet_doc: Document) -> None:
    """A recipe with a malformed later step is refused before step 1 runs: no change, no history."""
    before = full_state(lenet_doc.model)
    with pytest.raises(RecipeError, match="step 2"):
        apply_recipe(lenet_doc, {"steps": [PRUNE, {**PRUNE, "amont": 0.3}]})
    assert_same_state(before, full_state(lenet_doc.model))
    assert not lenet_doc.history.can_undo and not lenet_doc.history.can_redo


def test_empty_recipe_is_valid(lenet_doc: Document) -> None:
    """A recipe with no steps validates and replays as zero steps, changing nothing."""
    before = full_state(lenet_doc.model)
    assert apply_recipe(lenet_doc, {"steps": []}) == 0
    assert_same_state(before, full_state(lenet_doc.model))


# -- failures roll back --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"op": "prune", "method": "l1_unstructured", "targets": ["conv9.weight"], "amount": 0.5}, "conv9.weight"),
        ({"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight"], "amount": 1.5}, "1.5"),
        ({"op": "prune", "method": "l1_unstructured", "targets": ["fc3.bias"], "amount": 11}, "11"),
        ({"op": "prune", "method": "no_such_method", "targets": ["fc1.weight"], "amount": 0.5}, "no_such_method"),
        ({"op": "prune", "method": "custom_from_mask", "targets": ["fc1.weight"], "mask": "missing.pt"},
         "missing.pt"),
        ({"op": "global", "method": "ln_structured", "targets": ["fc1.weight"], "amount": 0.5}, "ln_structured"),
        ({"op": "remove", "targets": ["fc3.weight"]}, "not pruned"),
        ({"op": "prune", "method": "plugins/myplug.py:FailsOnBig", "targets": ["conv1.weight", "fc1.weight"]},
         "too big"),
    ],
    ids=["unknown-target", "amount-1.5", "count-too-big", "unknown-method", "missing-mask", "not-a-global-method",
         "remove-unpruned", "plugin-fails-midway"],
)
def test_failing_step_three_leaves_document_as_before(
    tmp_path: Path, plugin_file: Path, bad: dict[str, Any], message: str
) -> None:
    """A failing step 3 undoes steps 1–2: model bit for bit as before, earlier history intact, nothing to redo."""
    doc = Document.demo("lenet")
    doc.prune("random_unstructured", ["conv1.weight", "fc2.weight"], amount=0.5)
    before = full_state(doc.model)
    recipe_before = copy.deepcopy(doc.recipe())
    recipe = {"steps": [
        {"op": "prune", "method": "l1_unstructured", "targets": ["fc1.weight", "conv1.weight"], "amount": 0.4},
        {"op": "remove", "targets": ["fc2.weight", "conv1.weight"]},
        bad,
        {"op": "prune", "method": "foobar", "targets": ["fc3.weight"]},
    ]}
    with pytest.raises(RecipeError, match=r"^step 3 ") as info:
        apply_recipe(doc, recipe, base_dir=tmp_path, trust=True)
    assert message in str(info.value)
    assert_same_state(before, full_state(doc.model))
    assert doc.recipe() == recipe_before
    assert doc.history.index == 1
    assert not doc.history.can_redo
    assert doc.redo() is None
    doc.undo()
    assert_same_state(full_state(Document.demo("lenet").model), full_state(doc.model))


@pytest.mark.parametrize("cancel_at", ["step 2/", "step 3/"])
def test_cancel_during_replay_rolls_back(lenet_doc: Document, cancel_at: str) -> None:
    """Cancelling between steps or during the last one raises Cancelled and undoes every replayed step."""
    lenet_doc.prune("l1_unstructured", ["fc3.weight"], amount=0.5)
    before = full_state(lenet_doc.model)
    token = CancelToken()

    def progress(fraction: float, text: str) -> None:
        if text.startswith(cancel_at):
            token.cancel()

    recipe = {"steps": [PRUNE, {**PRUNE, "targets": ["fc1.weight"]}, {**PRUNE, "targets": ["fc2.weight"]}]}
    with pytest.raises(Cancelled):
        apply_recipe(lenet_doc, recipe, progress=progress, cancel=token)
    assert_same_state(before, full_state(lenet_doc.model))
    assert lenet_doc.history.index == 1 and not lenet_doc.history.can_redo


def test_progress_reports_each_step(lenet_doc: Document) -> None:
    """apply_recipe reports each step in order and finishes at 1.0, returning the number of steps run."""
    seen: list[tuple[float, str]] = []
    recipe = {"steps": [PRUNE, {"op": "remove", "targets": ["conv1.weight"]}]}
    assert apply_recipe(lenet_doc, recipe, progress=lambda f, t: seen.append((f, t))) == 2
    assert seen == [(0.0, "step 1/2: prune"), (0.5, "step 2/2: remove"), (1.0, "done")]


# -- files ---------------------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path, lenet_doc: Document) -> None:
    """save_recipe writes the recipe as JSON; load_recipe gives back the same object, which replays exactly."""
    lenet_doc.prune("random_structured", ["conv2.weight"], amount=0.5, dim=0)
    lenet_doc.global_prune("random_unstructured", ["fc*.weight"], 0.25)
    lenet_doc.remove(["conv2.weight"])
    path = save_recipe(lenet_doc, tmp_path / "r.json")
    assert path == tmp_path / "r.json"
    assert json.loads(path.read_text(encoding="utf-8")) == lenet_doc.recipe()
    loaded = load_recipe(path)
    assert loaded == lenet_doc.recipe()
    fresh = Document.demo("lenet")
    apply_recipe(fresh, loaded, base_dir=tmp_path)
    assert_same_state(full_state(lenet_doc.model), full_state(fresh.model))
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"steps": [{"op": "prune", "method": "foobar", "targets": ["x"], "amont": 1}]}', "step 1"),
        (b"[1, 2]", "JSON object"),
    ],
)
def test_load_recipe_refuses_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    """load_recipe turns unreadable, non-JSON and malformed files into a one-line RecipeError."""
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_load_recipe_missing_file(tmp_path: Path) -> None:
    """A recipe path that does not exist is a RecipeError naming the path."""
    with pytest.raises(RecipeError, match=r"nope\.json"):
        load_recipe(tmp_path / "nope.json")
