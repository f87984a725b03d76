"""The fast L1 paths leave a model exactly as ``torch.nn.utils.prune`` does: torch's own behaviour is the
specification. Masks are identical wherever no other candidate has exactly the threshold magnitude; among entries
tied at the threshold the same number is pruned.

A small CHUNK forces every code path (chunked streaming, several tensors, narrowing passes) on tensors small
enough to test quickly.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from sparsegui.core import fastprune, radix
from sparsegui.core.bitmask import BitMask

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.fixture(autouse=True)
def small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastprune, "MIN_NUMEL", 1)
    monkeypatch.setattr(radix, "CHUNK", 257)


def values(shape: tuple[int, ...], dtype: torch.dtype, seed: int, special: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    if special:
        flat = t.view(-1)
        picks = torch.randperm(flat.numel(), generator=gen)[:12]
        for i, v in zip(picks.tolist(), [math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0] * 2, strict=True):
            flat[i] = v
    return t.to(dtype)


def layer(weight: torch.Tensor) -> nn.Module:
    module = nn.Module()
    module.weight = nn.Parameter(weight.clone())
    return module


def threshold_ties(scores: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """Entries whose magnitude equals the k-th smallest candidate magnitude (torch's topk may pick any of them)."""
    if k == 0:
        return torch.zeros_like(candidates)
    mags = scores.abs().to(torch.float64)
    cand = mags[candidates]
    kth = torch.sort(cand).values[k - 1]
    same = (mags == kth) | (torch.isnan(mags) & torch.isnan(kth))
    return same & candidates


def assert_same_module(fast: nn.Module, slow: nn.Module, ties: torch.Tensor | None = None, count: bool = True) -> None:
    """Same parameters, buffers (values, dtypes) and hooks; masks equal outside ``ties`` (with the same counts, unless
    ``count`` is False: global ties may fall in another tensor)."""
    assert list(dict(fast.named_parameters())) == list(dict(slow.named_parameters()))
    assert list(dict(fast.named_buffers())) == list(dict(slow.named_buffers()))
    for (name, a), (_, b) in zip(fast.named_parameters(), slow.named_parameters(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a.nan_to_num(), b.nan_to_num()), name
    for (name, a), (_, b) in zip(fast.named_buffers(), slow.named_buffers(), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if ties is None:
            assert torch.equal(a, b), name
        else:
            assert torch.equal(a[~ties], b[~ties]), name
            assert not count or int((a == 0).sum()) == int((b == 0).sum()), name
    hooks_a = [type(h) for h in fast._forward_pre_hooks.values()]
    hooks_b = [type(h) for h in slow._forward_pre_hooks.values()]
    assert hooks_a == hooks_b
    for ha, hb in zip(fast._forward_pre_hooks.values(), slow._forward_pre_hooks.values(), strict=True):
        if isinstance(ha, prune.PruningContainer):
            assert [type(m) for m in ha] == [type(m) for m in hb]
            assert [getattr(m, "amount", None) for m in ha] == [getattr(m, "amount", None) for m in hb]
        assert ha._tensor_name == hb._tensor_name
    if ties is None:
        assert torch.equal(fast.weight.nan_to_num(), slow.weight.nan_to_num())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.97, 1.0, 0, 1, 777, 1000])
def test_l1_unstructured_matches_torch(dtype: torch.dtype, amount: float | int) -> None:
    weight = values((40, 25), dtype, seed=1)
    fast, slow = layer(weight), layer(weight)
    fastprune.l1_unstructured(fast, "weight", amount)
    prune.l1_unstructured(slow, "weight", amount)
    k = amount if isinstance(amount, int) else round(amount * weight.numel())
    ties = threshold_ties(weight, torch.ones_like(weight, dtype=torch.bool), k)
    exact = int(ties.sum()) <= 1
    assert_same_module(fast, slow, None if exact else ties)
    assert int((fast.weight_mask == 0).sum()) == k
    if dtype in (torch.float32, torch.float64):
        assert exact  # random normal values of this size have no ties: bit-identical masks


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amount", [0.1, 0.5, 0.9, 1.0])
def test_nan_inf_and_signed_zeros(dtype: torch.dtype, amount: float) -> None:
    weight = values((33, 31), dtype, seed=2, special=True)
    fast, slow = layer(weight), layer(weight)
    fastprune.l1_unstructured(fast, "weight", amount)
    prune.l1_unstructured(slow, "weight", amount)
    k = round(amount * weight.numel())
    ties = threshold_ties(weight, torch.ones_like(weight, dtype=torch.bool), k)
    assert_same_module(fast, slow, ties)
    nan = torch.isnan(weight)
    if amount < 0.99:
        assert bool(fast.weight_mask[nan].all())  # NaN ranks above +Inf, as in torch's topk
        assert not bool(fast.weight_mask[weight == 0].any())  # ±0 are the smallest magnitudes


def test_float32_zeros_tie_prunes_the_same_count() -> None:
    weight = values((64, 64), torch.float32, seed=3)
    weight[:, ::2] = 0.0  # half the entries tie at magnitude 0
    fast, slow = layer(weight), layer(weight)
    fastprune.l1_unstructured(fast, "weight", 0.25)
    prune.l1_unstructured(slow, "weight", 0.25)
    assert_same_module(fast, slow, weight == 0)
    assert torch.equal(fast.weight, slow.weight)  # pruning zeros leaves the same values either way


@pytest.mark.parametrize("first", ["random", "l1", "ln"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_iterative_pruning_only_acts_on_unpruned_entries(first: str, dtype: torch.dtype) -> None:
    weight = values((48, 20), dtype, seed=4)
    fast, slow = layer(weight), layer(weight)
    for module in (fast, slow):
        torch.manual_seed(0)
        if first == "random":
            prune.random_unstructured(module, "weight", 0.3)
        elif first == "l1":
            prune.l1_unstructured(module, "weight", 0.2)
        else:
            prune.ln_structured(module, "weight", 0.25, n=2, dim=0)
    candidates = slow.weight_mask == 1
    fastprune.l1_unstructured(fast, "weight", 0.4)
    prune.l1_unstructured(slow, "weight", 0.4)
    k = round(0.4 * int(candidates.sum()))
    ties = threshold_ties(weight, candidates, k)
    assert_same_module(fast, slow, ties if int(ties.sum()) > 1 else None)
    assert not bool(fast.weight_mask[~candidates].any())  # what was pruned stays pruned
    fastprune.l1_unstructured(fast, "weight", 5)  # a third time: the container grows
    prune.l1_unstructured(slow, "weight", 5)
    assert len(next(iter(fast._forward_pre_hooks.values()))) == 3
    assert int((fast.weight_mask == 0).sum()) == int((slow.weight_mask == 0).sum())


def model_pairs(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def net(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3), nn.Flatten(), nn.Linear(256, 300),
                         nn.Linear(300, 10)).to(dtype)


def all_weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.detach().reshape(-1).double() for m, _ in model_pairs(model)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amount", [0.0, 0.2, 0.5, 0.99, 1.0, 3, 5000])
def test_global_l1_matches_global_unstructured(dtype: torch.dtype, amount: float | int) -> None:
    fast, slow = net(dtype), net(dtype)
    weights = all_weights(slow)
    fastprune.global_l1_unstructured(model_pairs(fast), amount)
    prune.global_unstructured(model_pairs(slow), pruning_method=prune.L1Unstructured, amount=amount)
    k = amount if isinstance(amount, int) else round(amount * weights.numel())
    ties = threshold_ties(weights, torch.ones_like(weights, dtype=torch.bool), k)
    offset = 0
    for (a, _), (b, _) in zip(model_pairs(fast), model_pairs(slow), strict=True):
        n = a.weight.numel()
        part = ties[offset:offset + n].view(a.weight.shape)
        offset += n
        assert_same_module(a, b, part if int(ties.sum()) > 1 else None, count=False)
        assert isinstance(next(iter(a._forward_pre_hooks.values())), prune.CustomFromMask)
    zeros = [sum(int((m.weight_mask == 0).sum()) for m, _ in model_pairs(model)) for model in (fast, slow)]
    assert zeros == [k, k]


def test_global_l1_over_mixed_pruned_and_fresh_tensors_and_dtypes() -> None:
    fast, slow = net(), net()
    for model in (fast, slow):
        model[3].double()  # torch concatenates in the promoted dtype
        torch.manual_seed(1)
        prune.random_unstructured(model[0], "weight", 0.5)
        prune.ln_structured(model[3], "weight", 0.3, n=1, dim=1)
    fastprune.global_l1_unstructured(model_pairs(fast), 0.6)
    prune.global_unstructured(model_pairs(slow), pruning_method=prune.L1Unstructured, amount=0.6)
    for (a, _), (b, _) in zip(model_pairs(fast), model_pairs(slow), strict=True):
        assert_same_module(a, b)
    x = torch.randn(2, 3, 8, 8)
    fast[3].float()
    slow[3].float()
    assert torch.equal(fast(x), slow(x))


def test_global_amount_too_large_raises_torchs_error_and_changes_nothing() -> None:
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="should be smaller"):
        fastprune.global_l1_unstructured(model_pairs(model), 10**7)
    assert list(model.state_dict()) == list(before)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_cancel_leaves_the_model_untouched() -> None:
    from sparsegui.core.errors import Cancelled
    from sparsegui.core.progress import CancelToken

    model = net()
    before = copy.deepcopy(model)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        fastprune.global_l1_unstructured(model_pairs(model), 0.5, cancel=token)
    assert_same_module(model[3], before[3])
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_supports_only_floating_tensors_on_one_device() -> None:
    assert fastprune.supports([torch.zeros(3)])
    assert not fastprune.supports([torch.zeros(3, dtype=torch.int32)])
    assert not fastprune.supports([])


def test_engine_uses_the_fast_path_and_stays_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the Document API, with and without the fast path: the same state_dict with masks."""
    from sparsegui.core.document import Document

    states = []
    for enabled in (True, False):
        monkeypatch.setattr(fastprune, "ENABLED", enabled)
        doc = Document.demo("resnet")
        doc.prune("l1_unstructured", ["*.weight"], types=["Conv2d"], amount=0.3)
        doc.global_prune("l1_unstructured", ["*.weight"], 0.5)
        states.append(doc.model.state_dict())
    assert list(states[0]) == list(states[1])
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_default_steps_on_a_large_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real chunk sizes: one tensor larger than a chunk, bit-identical to torch."""
    monkeypatch.setattr(fastprune, "MIN_NUMEL", 1 << 16)
    monkeypatch.setattr(radix, "CHUNK", 1 << 20)
    weight = values((1100, 1000), torch.float32, seed=9)
    fast, slow = layer(weight), layer(weight)
    fastprune.l1_unstructured(fast, "weight", 0.5)
    prune.l1_unstructured(slow, "weight", 0.5)
    assert_same_module(fast, slow)


@pytest.mark.parametrize("how", ["l1", "random", "ln", "container", "global"])
def test_remove_matches_prune_remove(how: str) -> None:
    """A document opened on a model pruned in torch's form, then ``remove``: exactly ``prune.remove``."""
    from sparsegui.core.document import Document
    from sparsegui.core.loading import LoadedModel, SourceInfo

    fast, slow = net(), net()
    for model in (fast, slow):
        torch.manual_seed(3)
        pairs = model_pairs(model)
        for module, name in pairs:
            if how in ("l1", "container"):
                prune.l1_unstructured(module, name, 0.3)
            if how in ("random", "container"):
                prune.random_unstructured(module, name, 0.2)
            if how == "ln":
                prune.ln_structured(module, name, 0.5, n=2, dim=0)
        if how == "global":
            prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=0.4)
    params = [m._parameters["weight_orig"] for m, _ in model_pairs(fast)]
    doc = Document(LoadedModel(fast, SourceInfo(format="demo")))
    doc.remove(["*.weight"])
    assert doc.model is fast
    for (a, name), (b, _) in zip(model_pairs(fast), model_pairs(slow), strict=True):
        prune.remove(b, name)
        assert list(a._parameters) == list(b._parameters) and list(a._buffers) == list(b._buffers)
        assert not a._forward_pre_hooks and "weight" not in a.__dict__
        assert torch.equal(a.weight, b.weight)
    assert all(m.weight is p for (m, _), p in zip(model_pairs(fast), params, strict=True))  # same objects, as torch
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(fast(x), slow(x))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_cuda_tensors_match_torch(dtype: torch.dtype) -> None:
    weight = values((300, 257), dtype, seed=11, special=True).cuda()
    fast, slow = layer(weight), layer(weight)
    fastprune.l1_unstructured(fast, "weight", 0.4)
    prune.l1_unstructured(slow, "weight", 0.4)
    k = round(0.4 * weight.numel())
    ties = threshold_ties(weight, torch.ones_like(weight, dtype=torch.bool), k)
    assert_same_module(fast, slow, ties if int(ties.sum()) > 1 else None)
    pairs_fast, pairs_slow = model_pairs(net().cuda()), model_pairs(net().cuda())
    fastprune.global_l1_unstructured(pairs_fast, 0.5)
    prune.global_unstructured(pairs_slow, pruning_method=prune.L1Unstructured, amount=0.5)
    for (a, _), (b, _) in zip(pairs_fast, pairs_slow, strict=True):
        assert_same_module(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_the_selection_pass_counts_zeros_and_nonfinite_as_a_scan_would(dtype: torch.dtype) -> None:
    from sparsegui.core.bitmask import BitMask
    from sparsegui.core.state import scan

    torch.manual_seed(0)
    values = torch.randn(5000).to(dtype)
    values[:7] = 0.0
    values[7:9] = -0.0
    values[9:12] = torch.tensor([float("nan"), float("inf"), -float("inf")]).to(dtype)
    plain = torch.randn(3000).to(dtype)  # no zeros: known exactly for every dtype
    tally: list = []
    fastprune.l1_masks([fastprune.Entry(values, BitMask.ones((5000,))), fastprune.Entry(plain, None)], 0.3,
                       tally=tally)
    truth = scan(values)
    zeros, nonfinite = tally[0]
    assert nonfinite == truth.nonfinite == 3
    assert zeros in (truth.zeros, None) and (zeros is not None) == (dtype in (torch.float16, torch.bfloat16))
    assert tally[1] == (0, 0)


def test_a_global_prune_knows_the_counts_without_reading_again() -> None:
    from sparsegui.core.document import Document

    doc = Document.demo("lenet")
    doc.global_prune("l1_unstructured", ["fc1.weight", "fc2.weight"], amount=0.5)
    for name in ("fc1.weight", "fc2.weight"):
        ts = doc.state.tensors[name]
        assert ts.scanned is not None and ts.scanned.zeros == ts.pruning.mask.zeros  # from the mask alone


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
@pytest.mark.parametrize("tensors", [1, 4])
def test_segments_written_side_by_side_equal_one_thread(monkeypatch: pytest.MonkeyPatch, threads: int,
                                                        tensors: int) -> None:
    """Entries cut into segments and written on several threads give bit for bit the masks of one thread: the
    tied candidates pruned are the first ones in order (bf16 has few distinct values: the threshold is shared by
    many entries, across segments and tensors)."""
    torch.manual_seed(3)
    shapes = [(97, 131), (64, 64), (5000,), (300, 41)][:tensors]
    old = BitMask.from_tensor(torch.rand(shapes[0]) > 0.2)
    entries = [fastprune.Entry((torch.randn(s) * 0.01).to(torch.bfloat16), old if i == 0 else None)
               for i, s in enumerate(shapes)]

    def masks(count: int) -> list[BitMask]:
        monkeypatch.setattr(radix, "workers", lambda: count)
        return fastprune.l1_masks(entries, 0.37)

    reference = masks(1)
    total = sum(e.numel if e.mask is None else e.mask.kept for e in entries)
    assert sum(e.numel - m.kept for e, m in zip(entries, reference, strict=True)) - old.zeros == round(0.37 * total)
    for mask, again in zip(reference, masks(threads), strict=True):
        assert mask.same_as(again) and mask.zeros == again.zeros
