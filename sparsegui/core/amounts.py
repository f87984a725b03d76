"""Validating pruning settings before anything changes, with errors that name the bad value."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from sparsegui.core.errors import PruneError

Amount = int | float


def parse_amount(text: str) -> Amount:
    """``"30%"`` → 0.3, ``"0.3"`` → 0.3, ``"3"`` → 3 (a count of entries)."""
    raw = text.strip()
    try:
        if raw.endswith("%"):
            return float(raw[:-1]) / 100.0
        if raw.lstrip("+-").isdigit():
            return int(raw)
        return float(raw)
    except ValueError as exc:
        raise PruneError(f"amount {text!r} is not a number, a percentage or a count") from exc


def check_amount_value(amount: object) -> Amount:
    """An amount is a fraction in [0, 1] (float) or a count ≥ 0 (int)."""
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise PruneError(f"amount={amount!r} must be a fraction in [0, 1] or a whole number of entries")
    if isinstance(amount, numbers.Integral):
        if amount < 0:
            raise PruneError(f"amount={amount} must not be negative")
        return int(amount)
    value = float(amount)
    if not math.isfinite(value) or value < 0.0 or value > 1.0:
        raise PruneError(f"amount={amount!r} must be a fraction in [0, 1] (or a whole count of entries)")
    return value


def check_amount_fits(amount: Amount, size: int, what: str) -> None:
    """A count may not exceed the number of units (entries or channels) it prunes from."""
    if isinstance(amount, int) and amount > size:
        raise PruneError(f"amount={amount} is more than the {size} {what}")


def check_dim(dim: object, shape: Sequence[int], name: str) -> int:
    """A ``dim`` that exists on a tensor of ``shape`` (negative counts from the end)."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise PruneError(f"dim={dim!r} must be an integer")
    ndim = len(shape)
    if ndim == 0 or not -ndim <= int(dim) < ndim:
        raise PruneError(f"dim={dim} does not exist on {name} of shape {list(shape)}")
    return int(dim)


# Finite norm orders ln_structured accepts. Below 1 the "norm" is not one (0 counts non-zero entries, a negative order
# makes any zero entry decide the channel); above 8 torch's power sums leave float32's range for ordinary weights
# (|w| = 0.001 underflows to 0 at n = 16, |w| = 100 overflows at n = 32), so channels tie and are chosen arbitrarily.
# 'inf' ranks by the largest entry, which is what a very high order approximates.
MIN_NORM_ORDER = 1
MAX_NORM_ORDER = 8
NORM_NAMES = ("inf", "-inf", "fro", "nuc")


def check_n(n: object) -> int | float | str:
    """The norm order of ``ln_structured``: a number from 1 to 8, ``inf``/``-inf`` (or ``"inf"``/``"-inf"``),
    ``"fro"`` or ``"nuc"``. NaN (which ranks channels arbitrarily) and orders torch computes wrongly are refused."""
    options = f"a number from {MIN_NORM_ORDER} to {MAX_NORM_ORDER}, 'inf', '-inf', 'fro' or 'nuc'"
    if isinstance(n, str):
        if n in ("fro", "nuc"):
            return n
        if n in ("inf", "-inf"):
            return float(n)
        raise PruneError(f"n={n!r} must be {options}")
    if isinstance(n, bool) or not isinstance(n, numbers.Real):
        raise PruneError(f"n={n!r} must be {options} (the order of the norm)")
    if isinstance(n, numbers.Integral):
        if MIN_NORM_ORDER <= int(n) <= MAX_NORM_ORDER:
            return int(n)
        shown = str(int(n)) if abs(int(n)) < 10**20 else "a huge integer"
        raise PruneError(f"n={shown} must be {options}")
    value = float(n)
    if math.isnan(value):
        raise PruneError(f"n=nan is not a norm order; n must be {options}")
    if math.isinf(value):
        return value
    if not MIN_NORM_ORDER <= value <= MAX_NORM_ORDER:
        raise PruneError(f"n={value!r} must be {options}")
    return value
