"""Python's cyclic garbage collector kept off the UI's back, and out of a headless command's way.

A full collection walks every tracked object while holding the interpreter: with torch, Qt and ``transformers``
imported (400 000 objects and more) one takes 100–200 ms, a frozen window. Full collections come while the objects
pile up (each time their number grows by a quarter): at start and while ``transformers`` is first imported. So the
objects that live as long as the app (modules, classes, the window) are moved out of the collector's sight once they
exist (:func:`gc.freeze`), and the job that first imports ``transformers`` runs with collections paused, what it
left alive frozen after it; later collections only walk what is new.

A document holds no reference cycles (it is freed by reference counting, a test checks it), so freezing the one
open at that moment does not keep it alive once it is replaced.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def freeze_survivors() -> None:
    """Move every object alive now out of the collector's generations (collections stay on for new ones)."""
    gc.freeze()


def quietly(build: Callable[..., _T], *args: object) -> _T:
    """``build(*args)`` with collections paused, then what it left alive frozen: for a job that creates many
    long-lived objects at once. Collections resume after, whatever happens."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return build(*args)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def quietly_importing(module: str, build: Callable[..., _T], *args: object) -> _T:
    """``build(*args)``, :func:`quietly` if it may be the first import of ``module``."""
    return build(*args) if module in sys.modules else quietly(build, *args)
