"""The Document prunes exactly as ``torch.nn.utils.prune`` does: same masks, parameters and hooks, bit for bit.

Each test applies an operation through the Document and the same call(s) directly through torch on a deep copy
of the model taken beforehand. Random methods: the Document seeds once per operation (``torch.manual_seed``) and
prunes its targets in model order, so the direct side seeds once right before its calls, in the same order.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core.demos import build_demo, demo_example_input
from sparsegui.core.document import Document
from sparsegui.core.errors import PruneError
from sparsegui.core.loading import LoadedModel, SourceInfo
from sparsegui.plugins.foobar import FooBarPruningMethod
from tests.helpers import assert_same_state, full_state

WEIGHTS = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]
LENET_TENSORS = [*WEIGHTS, "conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias", "fc3.bias"]


# -- helpers --------------------------------------------------------------------------------------------------------
def in_model_order(model: nn.Module, qualnames: Sequence[str]) -> list[tuple[nn.Module, str]]:
    """``(module, tensor)`` pairs for ``qualnames``, in the model's module and parameter order."""
    wanted = set(qualnames)
    pairs: list[tuple[nn.Module, str]] = []
    for mname, module in model.named_modules():
        for pname in list(module._parameters):
            local = pname.removesuffix("_orig")
            hooked = any(getattr(h, "_tensor_name", None) == local for h in module._forward_pre_hooks.values())
            name = local if hooked else pname
            qual = f"{mname}.{name}" if mname else name
            if qual in wanted:
                pairs.append((module, name))
    assert len(pairs) == len(wanted), f"not all of {sorted(wanted)} found"
    return pairs


def direct(model: nn.Module, method: str, qualnames: Sequence[str], seed: int | None = None, **kwargs: Any) -> None:
    """Prune ``qualnames`` of ``model`` by calling torch's functional API directly (seeding first if asked)."""
    pairs = in_model_order(model, qualnames)
    if seed is not None:
        torch.manual_seed(seed)
    for module, name in pairs:
        if method == "foobar":
            FooBarPruningMethod.apply(module, name)
        else:
            getattr(prune, method)(module, name, **kwargs)


def direct_global(model: nn.Module, cls: type, qualnames: Sequence[str], amount: float | int,
                  seed: int | None = None) -> None:
    pairs = in_model_order(model, qualnames)
    if seed is not None:
        torch.manual_seed(seed)
    prune.global_unstructured(pairs, pruning_method=cls, amount=amount)


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.named_buffers() if k.endswith("_mask")}


def assert_parity(doc: Document, reference: nn.Module, expect_masks: int | None = None) -> None:
    """Same masks (bitwise), and the same parameters, buffers, attributes and hooks everywhere."""
    got, want = masks_of(doc.model), masks_of(reference)
    assert list(got) == list(want)
    if expect_masks is not None:
        assert len(got) == expect_masks
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key
    assert_same_state(full_state(doc.model), full_state(reference))


@pytest.fixture
def doc() -> Document:
    return Document.demo("lenet")


@pytest.fixture(autouse=True)
def _keep_global_rng() -> Any:
    """The direct torch calls reseed the global generator; put it back so tests do not leak state."""
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


# -- one method at a time --------------------------------------------------------------------------------------------
DETERMINISTIC = [
    pytest.param("identity", ["conv1.weight", "fc3.bias"], {}, id="identity"),
    pytest.param("l1_unstructured", ["*.weight"], {"amount": 0.3}, id="l1-fraction"),
    pytest.param("l1_unstructured", ["conv1.weight", "fc1.bias"], {"amount": 7}, id="l1-count"),
    pytest.param("l1_unstructured", ["*"], {"amount": 0.0}, id="l1-zero"),
    pytest.param("l1_unstructured", ["fc3.*"], {"amount": 1.0}, id="l1-all"),
    *[
        pytest.param("ln_structured", ["*.weight"], {"amount": 0.5, "n": n, "dim": dim}, id=f"ln-n{n}-dim{dim}")
        for n in (1, 2, math.inf)
        for dim in (0, 1)
    ],
    pytest.param("ln_structured", ["conv2.weight", "fc2.weight"], {"amount": 2, "n": 2, "dim": 1}, id="ln-count"),
    pytest.param("ln_structured", ["conv2.weight"], {"amount": 0.25, "n": 1, "dim": -1}, id="ln-negative-dim"),
]


@pytest.mark.parametrize(("method", "targets", "kwargs"), DETERMINISTIC)
def test_deterministic_methods_match_torch(
    doc: Document, method: str, targets: list[str], kwargs: dict[str, Any]
) -> None:
    """identity, l1_unstructured and ln_structured give torch's masks bit for bit (fractions and counts)."""
    reference = copy.deepcopy(doc.model)
    command = doc.prune(method, targets, **kwargs)
    direct(reference, method, command.step["targets"], **kwargs)
    assert_parity(doc, reference, expect_masks=len(command.step["targets"]))
    assert "seed" not in command.step


def test_ln_structured_accepts_inf_as_text(doc: Document) -> None:
    """n='inf' (as typed in the CLI or a recipe) is torch's n=float('inf')."""
    reference = copy.deepcopy(doc.model)
    doc.prune("ln_structured", ["conv2.weight", "fc1.weight"], amount=0.5, n="inf", dim=0)
    direct(reference, "ln_structured", ["conv2.weight", "fc1.weight"], amount=0.5, n=math.inf, dim=0)
    assert_parity(doc, reference, expect_masks=2)


RANDOM = [
    pytest.param("random_unstructured", ["*.weight"], {"amount": 0.3}, 7, id="random-fraction"),
    pytest.param("random_unstructured", ["*"], {"amount": 5}, 123, id="random-count"),
    pytest.param("random_structured", ["*.weight"], {"amount": 0.5, "dim": 0}, 11, id="rs-dim0"),
    pytest.param("random_structured", ["conv2.weight", "fc1.weight", "fc2.weight"], {"amount": 0.5, "dim": 1}, 0,
                 id="rs-dim1"),
    pytest.param("random_structured", ["fc1.weight", "fc2.weight"], {"amount": 3, "dim": 0}, 2**31 - 1,
                 id="rs-count"),
]


@pytest.mark.parametrize(("method", "targets", "kwargs", "seed"), RANDOM)
def test_seeded_random_methods_match_torch(
    doc: Document, method: str, targets: list[str], kwargs: dict[str, Any], seed: int
) -> None:
    """Seeded random methods equal torch after torch.manual_seed(seed), pruning the targets in model order."""
    reference = copy.deepcopy(doc.model)
    command = doc.prune(method, targets, seed=seed, **kwargs)
    assert command.step["seed"] == seed
    direct(reference, method, command.step["targets"], seed=seed, **kwargs)
    assert_parity(doc, reference, expect_masks=len(command.step["targets"]))


def test_random_targets_are_pruned_in_model_order(doc: Document) -> None:
    """Targets listed out of order are still pruned in model order after one seeding."""
    reference = copy.deepcopy(doc.model)
    command = doc.prune("random_unstructured", ["fc2.weight", "conv1.weight", "fc1.bias"], amount=0.4, seed=5)
    assert command.step["targets"] == ["conv1.weight", "fc1.bias", "fc2.weight"]
    torch.manual_seed(5)
    for module, name in ((reference.conv1, "weight"), (reference.fc1, "bias"), (reference.fc2, "weight")):
        prune.random_unstructured(module, name, amount=0.4)
    assert_parity(doc, reference, expect_masks=3)


def test_recorded_seed_reproduces_an_unseeded_prune(doc: Document) -> None:
    """Without a seed the Document draws one and records it; torch seeded with it gives the same masks."""
    reference = copy.deepcopy(doc.model)
    command = doc.prune("random_structured", ["conv2.weight", "fc1.weight"], amount=0.5, dim=0)
    seed = command.step["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**31
    assert doc.recipe()["steps"][0]["seed"] == seed
    direct(reference, "random_structured", ["conv2.weight", "fc1.weight"], seed=seed, amount=0.5, dim=0)
    assert_parity(doc, reference, expect_masks=2)


def test_different_seeds_give_different_masks() -> None:
    """The seed matters: two seeds give different random masks, the same seed the same mask."""
    a, b, c = Document.demo("lenet"), Document.demo("lenet"), Document.demo("lenet")
    a.prune("random_unstructured", ["fc1.weight"], amount=0.5, seed=1)
    b.prune("random_unstructured", ["fc1.weight"], amount=0.5, seed=2)
    c.prune("random_unstructured", ["fc1.weight"], amount=0.5, seed=1)
    assert not torch.equal(a.model.fc1.weight_mask, b.model.fc1.weight_mask)
    assert torch.equal(a.model.fc1.weight_mask, c.model.fc1.weight_mask)


@pytest.mark.parametrize("method", ["foobar", "sparsegui.plugins.foobar:FooBarPruningMethod"])
def test_foobar_plugin_matches_torch(doc: Document, method: str) -> None:
    """The FooBar plugin equals FooBarPruningMethod.apply on each target."""
    reference = copy.deepcopy(doc.model)
    targets = ["conv1.weight", "fc3.bias", "fc2.weight"]
    doc.prune(method, targets)
    direct(reference, "foobar", targets)
    assert_parity(doc, reference, expect_masks=3)
    assert torch.equal(doc.model.fc3.bias_mask, torch.tensor([0.0, 1.0] * 5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_custom_from_mask_matches_torch(doc: Document, dtype: torch.dtype) -> None:
    """custom_from_mask with a dict of masks equals prune.custom_from_mask on each tensor."""
    reference = copy.deepcopy(doc.model)
    gen = torch.Generator().manual_seed(3)
    given = {
        "conv2.weight": (torch.rand(16, 6, 3, 3, generator=gen) > 0.5).to(dtype),
        "fc1.bias": (torch.rand(120, generator=gen) > 0.2).to(dtype),
    }
    doc.prune("custom_from_mask", list(given), mask={k: v.clone() for k, v in given.items()})
    for module, name in in_model_order(reference, list(given)):
        qual = "conv2.weight" if module is reference.conv2 else "fc1.bias"
        prune.custom_from_mask(module, name, given[qual])
    assert_parity(doc, reference, expect_masks=2)
    assert torch.equal(doc.model.conv2.weight_mask, given["conv2.weight"].float())


def test_custom_from_mask_single_tensor(doc: Document) -> None:
    """A bare mask tensor prunes its single target exactly as torch does."""
    reference = copy.deepcopy(doc.model)
    mask = torch.tensor([1.0, 0.0] * 5)
    doc.prune("custom_from_mask", ["fc3.bias"], mask=mask)
    prune.custom_from_mask(reference.fc3, "bias", mask)
    assert_parity(doc, reference, expect_masks=1)


# -- global pruning -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "cls", "amount", "seed"), [
    pytest.param("l1_unstructured", prune.L1Unstructured, 0.2, None, id="l1-fraction"),
    pytest.param("l1_unstructured", prune.L1Unstructured, 5000, None, id="l1-count"),
    pytest.param("random_unstructured", prune.RandomUnstructured, 0.35, 42, id="random-fraction"),
    pytest.param("random_unstructured", prune.RandomUnstructured, 777, 9, id="random-count"),
])
def test_global_unstructured_matches_torch(
    doc: Document, method: str, cls: type, amount: float | int, seed: int | None
) -> None:
    """global_prune equals prune.global_unstructured over the same tensors (seeded once for random)."""
    reference = copy.deepcopy(doc.model)
    command = doc.global_prune(method, WEIGHTS, amount, seed=seed)
    assert command.step.get("seed") == seed
    direct_global(reference, cls, WEIGHTS, amount, seed=seed)
    assert_parity(doc, reference, expect_masks=5)
    total = sum(int((m == 0).sum()) for m in masks_of(doc.model).values())
    assert total == (amount if isinstance(amount, int) else round(amount * 59838))


def test_global_after_local_pruning_matches_torch(doc: Document) -> None:
    """Global pruning over already-pruned tensors stacks in a PruningContainer, as torch does."""
    reference = copy.deepcopy(doc.model)
    doc.prune("ln_structured", ["conv2.weight", "fc1.weight"], amount=0.25, n=2, dim=0)
    doc.global_prune("random_unstructured", ["*.weight"], 0.3, seed=17)
    doc.global_prune("l1_unstructured", ["*.weight", "*.bias"], 0.2)
    direct(reference, "ln_structured", ["conv2.weight", "fc1.weight"], amount=0.25, n=2, dim=0)
    direct_global(reference, prune.RandomUnstructured, WEIGHTS, 0.3, seed=17)
    direct_global(reference, prune.L1Unstructured, LENET_TENSORS, 0.2)
    assert_parity(doc, reference, expect_masks=10)
    hook = doc.model.conv2._forward_pre_hooks
    container = next(h for h in hook.values() if h._tensor_name == "weight")
    assert isinstance(container, prune.PruningContainer)
    assert [type(m) for m in container._pruning_methods] == [prune.LnStructured, prune.CustomFromMask,
                                                             prune.CustomFromMask]


# -- iterative pruning --------------------------------------------------------------------------------------------
def test_iterative_pruning_matches_torch(doc: Document) -> None:
    """Pruning again builds torch's PruningContainer; each later mask only removes entries still alive."""
    reference = copy.deepcopy(doc.model)
    steps: list[tuple[str, list[str], dict[str, Any], int | None]] = [
        ("random_unstructured", ["*.weight"], {"amount": 0.3}, 3),
        ("l1_unstructured", ["conv2.weight", "fc1.weight"], {"amount": 0.5}, None),
        ("ln_structured", ["*.weight"], {"amount": 0.25, "n": 2, "dim": 0}, None),
        ("random_structured", ["conv2.weight", "fc2.weight"], {"amount": 0.5, "dim": 1}, 8),
        ("foobar", ["fc3.weight", "fc3.bias"], {}, None),
        ("l1_unstructured", ["fc3.weight"], {"amount": 10}, None),
        ("identity", ["fc2.weight"], {}, None),
    ]
    previous = {}
    for method, targets, kwargs, seed in steps:
        command = doc.prune(method, targets, seed=seed, **kwargs)
        direct(reference, method, command.step["targets"], seed=seed, **kwargs)
        assert_parity(doc, reference)
        now = {k: v.clone() for k, v in masks_of(doc.model).items()}
        for key, old in previous.items():
            assert bool((now[key] <= old).all()), f"{method} revived entries of {key}"
        previous = now

    conv2 = next(h for h in doc.model.conv2._forward_pre_hooks.values() if h._tensor_name == "weight")
    assert type(conv2) is prune.PruningContainer
    assert [type(m) for m in conv2._pruning_methods] == [
        prune.RandomUnstructured, prune.L1Unstructured, prune.LnStructured, prune.RandomStructured,
    ]


def test_second_unstructured_pass_counts_only_unpruned_entries(doc: Document) -> None:
    """A second l1 pass of 50% removes half of the entries still alive, not half of the tensor."""
    doc.prune("random_unstructured", ["conv2.weight"], amount=0.3, seed=1)
    alive = int(doc.model.conv2.weight_mask.sum())
    assert alive == 864 - round(0.3 * 864)
    first = doc.model.conv2.weight_mask.clone()
    doc.prune("l1_unstructured", ["conv2.weight"], amount=0.5)
    mask = doc.model.conv2.weight_mask
    assert int(mask.sum()) == alive - round(0.5 * alive)
    # among the entries alive before, the ones kept have the larger |w|
    w = doc.model.conv2.weight_orig.detach().abs()
    removed = (first == 1) & (mask == 0)
    assert w[removed].max() <= w[mask == 1].min()


def test_count_amount_beyond_unpruned_entries_is_refused(doc: Document) -> None:
    """A count larger than the entries still unpruned is refused before anything changes."""
    doc.prune("l1_unstructured", ["conv1.weight"], amount=50)
    before = full_state(doc.model)
    with pytest.raises(PruneError, match=r"amount=5\b.*4 unpruned entries of conv1\.weight"):
        doc.prune("l1_unstructured", ["conv1.weight"], amount=5)
    assert_same_state(before, full_state(doc.model))
    doc.prune("l1_unstructured", ["conv1.weight"], amount=4)
    assert int(doc.model.conv1.weight_mask.sum()) == 0


# -- other demo models --------------------------------------------------------------------------------------------
def test_resnet_demo_matches_torch() -> None:
    """On the resnet demo, per-type ln_structured, random_structured and global pruning equal torch's."""
    doc = Document.demo("resnet")
    reference = copy.deepcopy(doc.model)
    convs = [r.qualname for r in doc.resolve(["*.weight"], ["Conv2d"])]
    assert len(convs) == 15 and "layer2.0.downsample.0.weight" in convs

    command = doc.prune("ln_structured", ["*.weight"], types=["Conv2d"], amount=0.5, n=1, dim=0)
    assert command.step["targets"] == convs
    direct(reference, "ln_structured", convs, amount=0.5, n=1, dim=0)
    doc.prune("random_structured", ["layer1.*.weight"], types=["Conv2d"], amount=0.25, dim=1, seed=4)
    direct(reference, "random_structured", [c for c in convs if c.startswith("layer1.")], seed=4, amount=0.25,
           dim=1)
    doc.global_prune("l1_unstructured", ["*.weight"], 0.4, types=["Conv2d", "Linear"])
    direct_global(reference, prune.L1Unstructured, [*convs, "fc.weight"], 0.4)
    assert_parity(doc, reference, expect_masks=16)
    assert "bn1.weight_mask" not in dict(doc.model.named_buffers())
    x = demo_example_input("resnet")
    with torch.no_grad():
        assert torch.equal(doc.model(x), reference(x))


def test_transformer_demo_matches_torch() -> None:
    """On the transformer demo, Linear weights (incl. out_proj) and MHA in_proj_weight prune as torch does."""
    doc = Document.demo("transformer")
    reference = copy.deepcopy(doc.model)
    linears = [r.qualname for r in doc.resolve(["*.weight"], ["Linear"])]
    assert "encoder.layers.0.self_attn.out_proj.weight" in linears and "head.weight" in linears
    assert not any("norm" in n or "embed" in n for n in linears)

    doc.prune("l1_unstructured", ["*.weight"], types=["Linear"], amount=0.5)
    direct(reference, "l1_unstructured", linears, amount=0.5)
    in_proj = ["encoder.layers.0.self_attn.in_proj_weight", "encoder.layers.1.self_attn.in_proj_weight"]
    command = doc.prune("ln_structured", ["*.in_proj_weight"], amount=0.25, n=2, dim=0)
    assert command.step["targets"] == in_proj
    direct(reference, "ln_structured", in_proj, amount=0.25, n=2, dim=0)
    doc.prune("random_unstructured", ["encoder.layers.1.self_attn.in_proj_weight"], amount=0.1, seed=99)
    direct(reference, "random_unstructured", in_proj[1:], seed=99, amount=0.1)
    assert_parity(doc, reference, expect_masks=len(linears) + 2)

    attn = doc.model.encoder.layers[0].self_attn
    assert "in_proj_weight_orig" in attn._parameters and "in_proj_weight_mask" in attn._buffers
    assert int((attn.in_proj_weight == 0).flatten(1).all(dim=1).sum()) == round(0.25 * 192)
    tokens = demo_example_input("transformer")
    with torch.no_grad():
        assert torch.equal(doc.model(tokens), reference(tokens))


# -- non-contiguous tensors ------------------------------------------------------------------------------------------
def make_non_contiguous(module: nn.Module, name: str) -> torch.Tensor:
    """Replace ``module.name`` by a parameter with the same values stored transposed (non-contiguous)."""
    values = getattr(module, name).detach().clone()
    setattr(module, name, nn.Parameter(values.t().contiguous().t()))
    param = getattr(module, name)
    assert not param.is_contiguous() and torch.equal(param, values)
    return values


def document_of(model: nn.Module) -> Document:
    """A document opened on ``model`` as it is (the document captures a model's tensors when it opens it)."""
    return Document(LoadedModel(model, SourceInfo(format="demo", demo="lenet", key_order=list(model.state_dict()))))


def test_non_contiguous_parameter_is_pruned_like_a_contiguous_one() -> None:
    """torch's l1_unstructured rejects a non-contiguous weight; the Document prunes it as torch would a copy."""
    model = build_demo("lenet")
    make_non_contiguous(model.fc2, "weight")
    doc = document_of(model)
    raw = copy.deepcopy(doc.model)
    assert not raw.fc2.weight.is_contiguous()
    with pytest.raises(RuntimeError):
        prune.l1_unstructured(raw.fc2, "weight", amount=0.3)
    contiguous = copy.deepcopy(doc.model)
    contiguous.fc2.weight = nn.Parameter(contiguous.fc2.weight.detach().contiguous())
    original = doc.model.fc2.weight
    original_stride = original.stride()

    doc.prune("l1_unstructured", ["fc2.weight"], amount=0.3)
    prune.l1_unstructured(contiguous.fc2, "weight", amount=0.3)
    assert_parity(doc, contiguous, expect_masks=1)

    doc.prune("random_unstructured", ["fc2.weight", "fc1.weight"], amount=0.2, seed=6)
    direct(contiguous, "random_unstructured", ["fc1.weight", "fc2.weight"], seed=6, amount=0.2)
    assert_parity(doc, contiguous, expect_masks=2)

    doc.undo()
    doc.undo()
    assert doc.model.fc2.weight is original and original.stride() == original_stride


def test_non_contiguous_parameter_in_global_pruning() -> None:
    """torch's global_unstructured rejects a non-contiguous weight; the Document matches torch on a copy."""
    model = build_demo("lenet")
    make_non_contiguous(model.fc1, "weight")
    doc = document_of(model)
    raw = copy.deepcopy(doc.model)
    with pytest.raises(RuntimeError):
        prune.global_unstructured([(raw.fc1, "weight"), (raw.fc2, "weight")], prune.L1Unstructured, amount=0.3)
    contiguous = copy.deepcopy(doc.model)
    contiguous.fc1.weight = nn.Parameter(contiguous.fc1.weight.detach().contiguous())
    doc.global_prune("l1_unstructured", WEIGHTS, 0.3)
    direct_global(contiguous, prune.L1Unstructured, WEIGHTS, 0.3)
    assert_parity(doc, contiguous, expect_masks=5)


def test_checkpoint_with_non_contiguous_pruned_tensors(tmp_path: Path) -> None:
    """A saved pruned checkpoint whose weight_orig/weight_mask are non-contiguous prunes further like torch."""
    source = Document.demo("lenet").model
    make_non_contiguous(source.fc2, "weight")
    prune.ln_structured(source.fc2, "weight", amount=0.25, n=2, dim=0)
    assert not source.fc2.weight_mask.is_contiguous()
    path = tmp_path / "pruned.pt"
    torch.save(source.state_dict(), path)
    doc = Document.open(path)
    assert torch.equal(doc.modules()["fc2"].weight_mask, source.fc2.weight_mask)  # the saved (non-contiguous) mask

    reference = copy.deepcopy(doc.model)
    fc2 = reference.fc2
    fc2.weight_orig.data = fc2.weight_orig.data.contiguous()
    fc2.weight_mask = fc2.weight_mask.contiguous()
    fc2.weight = fc2.weight_orig * fc2.weight_mask

    doc.global_prune("l1_unstructured", ["fc1.weight", "fc2.weight"], 0.3)
    direct_global(reference, prune.L1Unstructured, ["fc1.weight", "fc2.weight"], 0.3)
    doc.prune("l1_unstructured", ["fc2.weight"], amount=0.1)
    direct(reference, "l1_unstructured", ["fc2.weight"], amount=0.1)
    assert_parity(doc, reference)
    assert int((doc.modules()["fc2"].weight_mask == 0).flatten(1).all(dim=1).sum()) >= 21


# -- refused settings ---------------------------------------------------------------------------------------------
INVALID: list[Any] = [
    pytest.param(lambda d: d.prune("l1_unstructured", ["conv1.weight"], amount=1.5), "amount=1.5", id="amount-1.5"),
    pytest.param(lambda d: d.prune("l1_unstructured", ["conv1.weight"], amount=-1), "amount=-1", id="amount-neg"),
    pytest.param(lambda d: d.prune("random_unstructured", ["conv1.weight"], amount=-0.25, seed=1), "amount=-0.25",
                 id="amount-neg-fraction"),
    pytest.param(lambda d: d.prune("l1_unstructured", ["conv1.weight"], amount=float("nan")), "amount=nan",
                 id="amount-nan"),
    pytest.param(lambda d: d.prune("l1_unstructured", ["conv1.weight"], amount="0.3"), "amount='0.3'",
                 id="amount-text"),
    pytest.param(lambda d: d.prune("l1_unstructured", ["*.weight"], amount=55), "amount=55",
                 id="count-too-large"),
    pytest.param(lambda d: d.prune("ln_structured", ["conv1.weight"], amount=7, n=2, dim=0), "amount=7",
                 id="channels-too-many"),
    pytest.param(lambda d: d.prune("ln_structured", ["conv1.weight"], amount=0.5, n=2, dim=4), "dim=4",
                 id="dim-out-of-range"),
    pytest.param(lambda d: d.prune("random_structured", ["fc3.bias", "fc1.weight"], amount=0.5, dim=-2, seed=1),
                 "dim=-2", id="dim-negative-out-of-range"),
    pytest.param(lambda d: d.prune("ln_structured", ["conv1.weight"], amount=0.5, n=2, dim=1.0), "dim=1.0",
                 id="dim-float"),
    pytest.param(lambda d: d.prune("ln_structured", ["conv1.weight"], amount=0.5, dim=0), "needs n",
                 id="missing-n"),
    pytest.param(lambda d: d.prune("ln_structured", ["conv1.weight"], amount=0.5, n="two", dim=0), "n='two'",
                 id="bad-n"),
    pytest.param(lambda d: d.prune("ln_structured", ["conv1.weight"], amount=0.5, n=2), "needs dim",
                 id="missing-dim"),
    pytest.param(lambda d: d.prune("l1_unstructured", ["conv1.weight"]), "needs an amount", id="missing-amount"),
    pytest.param(lambda d: d.prune("l3_unstructured", ["conv1.weight"], amount=0.3), "'l3_unstructured'",
                 id="unknown-method"),
    pytest.param(lambda d: d.prune("nowhere.module:Nothing", ["conv1.weight"]), "'nowhere.module:Nothing'",
                 id="unimportable-plugin"),
    pytest.param(lambda d: d.prune("l1_unstructured", ["conv1.weight", "conv9.weight"], amount=0.3),
                 "'conv9.weight'", id="unknown-target"),
    pytest.param(lambda d: d.prune("l1_unstructured", ["*.kernel"], amount=0.3), "'*.kernel'",
                 id="unknown-pattern"),
    pytest.param(lambda d: d.prune("identity", ["conv1.weight"], amount=0.5), "amount=0.5", id="identity-amount"),
    pytest.param(lambda d: d.prune("l1_unstructured", ["conv1.weight"], amount=0.3, params={"beta": 1}), "'beta'",
                 id="unknown-setting"),
    pytest.param(lambda d: d.prune("custom_from_mask", ["fc3.bias"], mask=torch.ones(9)), "[9]",
                 id="mask-shape"),
    pytest.param(lambda d: d.prune("l1_unstructured", ["fc3.bias"], amount=0.3, mask=torch.ones(10)),
                 "takes no mask", id="mask-for-l1"),
    pytest.param(lambda d: d.remove(["conv1.weight"]), "'conv1.weight'", id="remove-unpruned"),
    pytest.param(lambda d: d.global_prune("l1_unstructured", WEIGHTS, 1.5), "amount=1.5", id="global-amount"),
    pytest.param(lambda d: d.global_prune("random_unstructured", WEIGHTS, 59839, seed=1), "amount=59839",
                 id="global-count"),
    pytest.param(lambda d: d.global_prune("ln_structured", WEIGHTS, 0.2), "'ln_structured'", id="global-method"),
]


@pytest.mark.parametrize(("call", "named"), INVALID)
def test_invalid_settings_are_refused_without_change(
    doc: Document, call: Callable[[Document], Any], named: str
) -> None:
    """Bad settings raise PruneError naming the bad value; the model, history and RNG stay exactly as they were."""
    doc.prune("random_unstructured", ["fc1.weight"], amount=0.1, seed=0)
    before = full_state(doc.model)
    rng = torch.get_rng_state()
    labels = doc.history.labels
    with pytest.raises(PruneError) as info:
        call(doc)
    assert named in str(info.value)
    assert "\n" not in str(info.value)
    assert_same_state(before, full_state(doc.model))
    assert torch.equal(torch.get_rng_state(), rng)
    assert doc.history.labels == labels and doc.history.index == 1


@pytest.mark.parametrize("method", ["ln_structured", "random_structured"])
def test_structured_on_a_vector_is_refused_like_torch(doc: Document, method: str) -> None:
    """Structured pruning of a 1-D bias fails in torch; the Document refuses it too and changes nothing."""
    kwargs: dict[str, Any] = {"amount": 0.5, "dim": 0, **({"n": 2} if method == "ln_structured" else {})}
    reference = copy.deepcopy(doc.model)
    with pytest.raises(ValueError, match="multidimensional"):
        getattr(prune, method)(reference.fc1, "bias", **kwargs)
    before = full_state(doc.model)
    with pytest.raises(PruneError, match="multidimensional"):
        doc.prune(method, ["conv1.weight", "fc1.bias"], seed=1 if method.startswith("random") else None, **kwargs)
    assert_same_state(before, full_state(doc.model))
    assert not doc.history.can_undo


def test_failure_midway_is_rolled_back(doc: Document) -> None:
    """A method that fails on the second target leaves the first target unpruned too."""

    class FailOnFc(prune.BasePruningMethod):
        PRUNING_TYPE = "unstructured"

        def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
            if t.dim() == 2:
                raise ValueError("refusing a matrix")
            return default_mask

    before = full_state(doc.model)
    import sparsegui.core.methods as methods

    spec = methods.spec_for_class("test:FailOnFc", FailOnFc, origin="test")
    methods._file_plugins[spec.name] = spec
    try:
        with pytest.raises(PruneError, match="refusing a matrix"):
            doc.prune(spec.name, ["conv1.bias", "fc1.weight"])
    finally:
        methods._file_plugins.pop(spec.name)
    assert_same_state(before, full_state(doc.model))
    assert not doc.history.can_undo


# -- the random state ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 12345, None])
def test_seeded_prune_leaves_the_global_rng_alone(doc: Document, seed: int | None) -> None:
    """A random prune (seeded or not) leaves torch's global RNG state exactly as it was, and ignores it."""
    torch.manual_seed(2024)
    rng = torch.get_rng_state()
    doc.prune("random_unstructured", ["*.weight"], amount=0.3, seed=seed)
    doc.prune("foobar", ["fc3.bias"], seed=seed)
    doc.global_prune("random_unstructured", ["*.bias"], 0.2, seed=seed)
    assert torch.equal(torch.get_rng_state(), rng)

    # the same seeds on a fresh document give the same masks whatever the global RNG did meanwhile
    seeds = [c.step["seed"] for c in doc.history.done()]
    other = Document.demo("lenet")
    torch.rand(1000)
    other.prune("random_unstructured", ["*.weight"], amount=0.3, seed=seeds[0])
    other.prune("foobar", ["fc3.bias"], seed=seeds[1])
    other.global_prune("random_unstructured", ["*.bias"], 0.2, seed=seeds[2])
    assert_same_state(full_state(doc.model), full_state(other.model))


def test_seeded_prune_touches_only_its_targets(doc: Document) -> None:
    """A seeded prune changes only the targeted modules; everything else stays bit for bit."""
    before = full_state(doc.model)
    doc.prune("random_structured", ["conv2.weight"], amount=0.5, dim=0, seed=8)
    after = full_state(doc.model)
    for name in before:
        if name != "conv2":
            assert_same_state({name: before[name]}, {name: after[name]})
    assert [p[0] for p in after["conv2"]["parameters"]] == ["bias", "weight_orig"]
    doc.undo()
    assert_same_state(before, full_state(doc.model))


# -- CUDA --------------------------------------------------------------------------------------------------------
@pytest.mark.cuda
def test_cuda_masks_equal_cpu_masks() -> None:
    """On CUDA the deterministic methods and global L1 give the same masks as on the CPU."""
    cpu, gpu = Document.demo("lenet"), Document.demo("lenet")
    assert gpu.move_to("cuda").type == "cuda"
    mask = {"fc1.bias": (torch.arange(120) % 3 != 0).float()}
    for d in (cpu, gpu):
        d.prune("identity", ["fc3.bias"])
        d.prune("l1_unstructured", ["conv1.weight", "fc1.weight"], amount=0.3)
        d.prune("l1_unstructured", ["fc2.weight"], amount=100)
        d.prune("ln_structured", ["conv2.weight"], amount=0.5, n=1, dim=0)
        d.prune("ln_structured", ["fc2.weight"], amount=0.25, n=2, dim=1)
        d.prune("ln_structured", ["fc1.weight"], amount=0.25, n=math.inf, dim=0)
        d.prune("foobar", ["conv1.bias"])
        d.prune("custom_from_mask", ["fc1.bias"], mask=mask)
        d.global_prune("l1_unstructured", ["*.weight"], 0.2)
    got, want = masks_of(gpu.model), masks_of(cpu.model)
    assert list(got) == list(want) and len(want) == 8
    for key in want:
        assert got[key].device.type == "cuda"
        assert torch.equal(got[key].cpu(), want[key]), key
    assert_same_state(full_state(cpu.model), full_state(gpu.model))
