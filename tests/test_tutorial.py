"""The PyTorch pruning tutorial, step by step, driven through the Document API on the ``lenet`` demo.

https://pytorch.org/tutorials/intermediate/pruning_tutorial.html: each test checks what the tutorial prints at that
step (parameters, buffers, hooks, masks, state_dict keys, sparsity), computed independently from the tensors.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core.demos import LeNet
from sparsegui.core.document import Document
from sparsegui.plugins.foobar import FooBarPruningMethod

SEED = 1234
WEIGHTS = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]


def pre_hooks(module: nn.Module) -> list[object]:
    return list(module._forward_pre_hooks.values())


def zeros(tensor: torch.Tensor) -> int:
    return int((tensor == 0).sum())


def step1(doc: Document) -> None:
    doc.prune("random_unstructured", ["conv1.weight"], amount=0.3, seed=SEED)


def step2(doc: Document) -> None:
    step1(doc)
    doc.prune("l1_unstructured", ["conv1.bias"], amount=3)


def step3(doc: Document) -> None:
    step2(doc)
    doc.prune("ln_structured", ["conv1.weight"], amount=0.5, n=2, dim=0)


def test_lenet_demo_is_the_tutorial_network(lenet_doc: Document) -> None:
    """The demo is the tutorial's LeNet: same layers, shapes and an unpruned starting point."""
    model = lenet_doc.model
    assert isinstance(model, LeNet)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "conv1.weight": (6, 1, 3, 3), "conv1.bias": (6,),
        "conv2.weight": (16, 6, 3, 3), "conv2.bias": (16,),
        "fc1.weight": (120, 400), "fc1.bias": (120,),
        "fc2.weight": (84, 120), "fc2.bias": (84,),
        "fc3.weight": (10, 84), "fc3.bias": (10,),
    }
    assert [name for name, _ in model.conv1.named_parameters()] == ["weight", "bias"]
    assert list(model.conv1.named_buffers()) == []
    assert pre_hooks(model.conv1) == []
    assert lenet_doc.report().zeros == 0


def test_random_unstructured_reparametrizes_conv1_weight(lenet_doc: Document) -> None:
    """random_unstructured 30% on conv1.weight: weight_orig + weight_mask + one RandomUnstructured hook, 16 zeros."""
    conv1 = lenet_doc.model.conv1
    original = conv1.weight.detach().clone()
    step1(lenet_doc)
    assert [name for name, _ in conv1.named_parameters()] == ["bias", "weight_orig"]
    assert [name for name, _ in conv1.named_buffers()] == ["weight_mask"]
    hooks = pre_hooks(conv1)
    assert len(hooks) == 1
    assert type(hooks[0]) is prune.RandomUnstructured
    assert hooks[0]._tensor_name == "weight"
    assert hooks[0].amount == 0.3
    assert not isinstance(conv1.weight, nn.Parameter)
    assert torch.equal(conv1.weight_orig.detach(), original)
    mask = conv1.weight_mask
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(conv1.weight, conv1.weight_orig * conv1.weight_mask)
    assert zeros(mask) == round(0.3 * 54) == 16
    assert zeros(conv1.weight) == 16


def test_forward_recomputes_weight_from_mask(lenet_doc: Document) -> None:
    """The hook recomputes weight = weight_orig * weight_mask before every forward."""
    step1(lenet_doc)
    conv1 = lenet_doc.model.conv1
    with torch.no_grad():
        conv1.weight_orig.add_(1.0)
    lenet_doc.model(torch.zeros(1, 1, 28, 28))
    assert torch.equal(conv1.weight, conv1.weight_orig * conv1.weight_mask)
    assert zeros(conv1.weight) == 16


def test_l1_unstructured_prunes_the_three_smallest_biases(lenet_doc: Document) -> None:
    """l1_unstructured amount=3 on conv1.bias zeroes exactly the 3 entries with the smallest |b|."""
    bias = lenet_doc.model.conv1.bias.detach().clone()
    step2(lenet_doc)
    conv1 = lenet_doc.model.conv1
    assert [name for name, _ in conv1.named_parameters()] == ["weight_orig", "bias_orig"]
    assert [name for name, _ in conv1.named_buffers()] == ["weight_mask", "bias_mask"]
    assert [type(h) for h in pre_hooks(conv1)] == [prune.RandomUnstructured, prune.L1Unstructured]
    assert zeros(conv1.bias) == 3
    assert torch.equal(conv1.bias_orig.detach(), bias)
    smallest = set(torch.topk(bias.abs(), 3, largest=False).indices.tolist())
    assert set(torch.nonzero(conv1.bias_mask == 0).flatten().tolist()) == smallest
    kept = bias.abs()[conv1.bias_mask == 1]
    assert kept.min() > bias.abs()[conv1.bias_mask == 0].max()


def test_ln_structured_stacks_on_the_random_mask(lenet_doc: Document) -> None:
    """ln_structured 50% n=2 dim=0 after random: a PruningContainer, 3 of 6 channels zero, old zeros kept."""
    step2(lenet_doc)
    conv1 = lenet_doc.model.conv1
    random_mask = conv1.weight_mask.clone()
    effective = conv1.weight.detach().clone()
    lenet_doc.prune("ln_structured", ["conv1.weight"], amount=0.5, n=2, dim=0)

    hook = next(h for h in pre_hooks(conv1) if h._tensor_name == "weight")
    assert type(hook) is prune.PruningContainer
    assert [type(m) for m in hook._pruning_methods] == [prune.RandomUnstructured, prune.LnStructured]
    ln = hook._pruning_methods[1]
    assert (ln.amount, ln.n, ln.dim) == (0.5, 2, 0)
    assert len([h for h in pre_hooks(conv1) if h._tensor_name == "weight"]) == 1

    mask = conv1.weight_mask
    dead = (mask.flatten(1) == 0).all(dim=1)
    assert int(dead.sum()) == 3
    # the pruned channels are those with the smallest L2 norm of the (already randomly pruned) weight
    norms = effective.flatten(1).norm(p=2, dim=1)
    assert set(torch.nonzero(dead).flatten().tolist()) == set(torch.topk(norms, 3, largest=False).indices.tolist())
    # every entry the random step zeroed is still zero; live channels keep exactly the random mask
    assert bool((mask[random_mask == 0] == 0).all())
    assert torch.equal(mask[~dead], random_mask[~dead])
    assert torch.equal(conv1.weight, conv1.weight_orig * mask)


def test_state_dict_keys_match_the_tutorial(lenet_doc: Document) -> None:
    """After the three steps state_dict holds conv1's *_orig and *_mask entries, as the tutorial prints."""
    step3(lenet_doc)
    assert list(lenet_doc.model.state_dict()) == [
        "conv1.weight_orig", "conv1.bias_orig", "conv1.weight_mask", "conv1.bias_mask",
        "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias",
    ]


def test_remove_makes_weight_pruning_permanent(lenet_doc: Document) -> None:
    """remove on conv1.weight: a plain Parameter again, no weight_orig/weight_mask/hook, values unchanged."""
    step3(lenet_doc)
    conv1 = lenet_doc.model.conv1
    pruned = conv1.weight.detach().clone()
    lenet_doc.remove(["conv1.weight"])
    assert [name for name, _ in conv1.named_parameters()] == ["bias_orig", "weight"]
    assert [name for name, _ in conv1.named_buffers()] == ["bias_mask"]
    assert isinstance(conv1.weight, nn.Parameter)
    assert "weight_orig" not in conv1._parameters and "weight_mask" not in conv1._buffers
    assert [(type(h), h._tensor_name) for h in pre_hooks(conv1)] == [(prune.L1Unstructured, "bias")]
    assert torch.equal(conv1.weight.detach(), pruned)
    assert zeros(conv1.weight) == zeros(pruned) >= 3 * 9
    # the bias is still pruned and still works through its hook
    assert zeros(conv1.bias) == 3
    assert list(lenet_doc.model.state_dict())[:4] == ["conv1.bias_orig", "conv1.weight", "conv1.bias_mask",
                                                      "conv2.weight"]


@pytest.mark.parametrize(
    ("types", "amount", "names"),
    [
        (["Conv2d"], 0.2, ["conv1.weight", "conv2.weight"]),
        (["Linear"], 0.4, ["fc1.weight", "fc2.weight", "fc3.weight"]),
    ],
)
def test_per_type_batch_prunes_each_weight(
    lenet_doc: Document, types: list[str], amount: float, names: list[str]
) -> None:
    """One batch per module type: each matching weight loses exactly round(amount * numel) smallest entries."""
    modules = lenet_doc.modules()
    before = {n: modules[n.split(".")[0]].weight.detach().clone() for n in WEIGHTS}
    command = lenet_doc.prune("l1_unstructured", ["*.weight"], types=types, amount=amount)
    assert command.step["targets"] == names
    for name in WEIGHTS:
        module = modules[name.split(".")[0]]
        if name in names:
            w = before[name]
            assert zeros(module.weight) == round(amount * w.numel())
            mask = module.weight_mask
            assert zeros(mask) == round(amount * w.numel())
            assert w.abs()[mask == 0].max() <= w.abs()[mask == 1].min()
        else:
            assert "weight_mask" not in module._buffers
            assert torch.equal(module.weight.detach(), before[name])
        assert "bias_mask" not in module._buffers


def test_per_type_batches_together_mask_every_weight(lenet_doc: Document) -> None:
    """Conv2d 20% then Linear 40%: named_buffers shows one weight_mask per layer, as the tutorial prints."""
    lenet_doc.prune("l1_unstructured", ["*.weight"], types=["Conv2d"], amount=0.2)
    lenet_doc.prune("l1_unstructured", ["*.weight"], types=["Linear"], amount=0.4)
    assert list(dict(lenet_doc.model.named_buffers())) == [n + "_mask" for n in WEIGHTS]
    report = lenet_doc.report()
    expected = {"conv1.weight": 11, "conv2.weight": 173, "fc1.weight": 19200, "fc2.weight": 4032, "fc3.weight": 336}
    assert {n: report.tensor(n).zeros for n in WEIGHTS} == expected
    assert all(report.tensor(n.replace("weight", "bias")).zeros == 0 for n in WEIGHTS)


def test_global_unstructured_hits_the_exact_total(lenet_doc: Document) -> None:
    """Global L1 20% over all five weights: exactly round(20%) zeros overall, per-layer sparsities unequal."""
    modules = lenet_doc.modules()
    before = {n: modules[n.split(".")[0]].weight.detach().clone() for n in WEIGHTS}
    lenet_doc.global_prune("l1_unstructured", WEIGHTS, 0.2)
    total = sum(w.numel() for w in before.values())
    assert total == 59838
    per_layer = {n: zeros(modules[n.split(".")[0]].weight) for n in WEIGHTS}
    assert sum(per_layer.values()) == round(0.2 * total) == 11968
    sparsities = [per_layer[n] / before[n].numel() for n in WEIGHTS]
    assert len({round(s, 6) for s in sparsities}) > 1
    assert min(sparsities) < 0.2 < max(sparsities)
    # one threshold: every pruned |w| is at most every kept |w|, across all tensors
    pruned = torch.cat([before[n].abs()[modules[n.split(".")[0]].weight_mask == 0] for n in WEIGHTS])
    kept = torch.cat([before[n].abs()[modules[n.split(".")[0]].weight_mask == 1] for n in WEIGHTS])
    assert pruned.max() <= kept.min()
    for n in WEIGHTS:
        hook = next(iter(modules[n.split(".")[0]]._forward_pre_hooks.values()))
        assert type(hook) is prune.CustomFromMask
    report = lenet_doc.report()
    assert report.zeros == 11968


@pytest.mark.parametrize("method", ["foobar", "sparsegui.plugins.foobar:FooBarPruningMethod"])
def test_foobar_plugin_prunes_every_other_entry(lenet_doc: Document, method: str) -> None:
    """The tutorial's FooBarPruningMethod on fc3.bias gives the mask [0, 1, 0, 1, ...]."""
    lenet_doc.prune(method, ["fc3.bias"])
    fc3 = lenet_doc.model.fc3
    assert torch.equal(fc3.bias_mask, torch.tensor([0.0, 1.0] * 5))
    hooks = pre_hooks(fc3)
    assert len(hooks) == 1 and type(hooks[0]) is FooBarPruningMethod
    assert torch.equal(fc3.bias, fc3.bias_orig * fc3.bias_mask)
    report = lenet_doc.report().to_json()
    fc3_json = next(m for m in report["modules"] if m["name"] == "fc3")
    assert fc3_json["hooks"] == [{"kind": "forward_pre", "class": "FooBarPruningMethod", "tensor": "bias",
                                  "methods": [{"class": "FooBarPruningMethod"}]}]


def test_report_decodes_hooks_in_order(lenet_doc: Document) -> None:
    """report().to_json() lists conv1's hooks with each method's class, amount, n and dim, in order."""
    step3(lenet_doc)
    data = lenet_doc.report().to_json()
    conv1 = next(m for m in data["modules"] if m["name"] == "conv1")
    assert [p["name"] for p in conv1["parameters"]] == ["weight_orig", "bias_orig"]
    assert [(b["name"], b["persistent"]) for b in conv1["buffers"]] == [("weight_mask", True), ("bias_mask", True)]
    assert conv1["hooks"] == [
        {"kind": "forward_pre", "class": "L1Unstructured", "tensor": "bias",
         "methods": [{"class": "L1Unstructured", "amount": 3}]},
        {"kind": "forward_pre", "class": "PruningContainer", "tensor": "weight",
         "methods": [{"class": "RandomUnstructured", "amount": 0.3},
                     {"class": "LnStructured", "amount": 0.5, "n": 2, "dim": 0}]},
    ]
    tensors = {t["name"]: t for t in conv1["tensors"]}
    model = lenet_doc.model
    assert tensors["weight"]["zeros"] == zeros(model.conv1.weight)
    assert tensors["bias"]["zeros"] == 3
    assert tensors["weight"]["pruned"] and tensors["bias"]["pruned"]
    assert conv1["totals"]["zeros"] == zeros(model.conv1.weight) + 3
    conv2 = next(m for m in data["modules"] if m["name"] == "conv2")
    assert conv2["hooks"] == [] and conv2["totals"]["zeros"] == 0
    assert data["totals"]["zeros"] == conv1["totals"]["zeros"]
    assert data["totals"]["parameters"] == sum(p.numel() for p in LeNet().parameters())


def test_tutorial_recipe_records_every_step(lenet_doc: Document) -> None:
    """The recipe lists the tutorial's steps with their settings and the random step's seed."""
    step3(lenet_doc)
    lenet_doc.remove(["conv1.weight"])
    steps = lenet_doc.recipe()["steps"]
    assert steps == [
        {"op": "prune", "method": "random_unstructured", "targets": ["conv1.weight"], "amount": 0.3, "seed": SEED},
        {"op": "prune", "method": "l1_unstructured", "targets": ["conv1.bias"], "amount": 3},
        {"op": "prune", "method": "ln_structured", "targets": ["conv1.weight"], "amount": 0.5, "n": 2, "dim": 0},
        {"op": "remove", "targets": ["conv1.weight"]},
    ]


def test_undo_walks_the_tutorial_back(lenet_doc: Document) -> None:
    """Undoing every tutorial step returns conv1 to a plain, unpruned layer with its original values."""
    conv1 = lenet_doc.model.conv1
    weight, bias = conv1.weight.detach().clone(), conv1.bias.detach().clone()
    step3(lenet_doc)
    lenet_doc.remove(["conv1.weight"])
    while lenet_doc.undo() is not None:
        pass
    assert [name for name, _ in conv1.named_parameters()] == ["weight", "bias"]
    assert list(conv1.named_buffers()) == [] and pre_hooks(conv1) == []
    assert torch.equal(conv1.weight.detach(), weight) and torch.equal(conv1.bias.detach(), bias)
