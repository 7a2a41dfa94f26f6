"""Callbacks that do not keep their object alive.

Segment's consumer threads, the per-invocation batch and the worker thread hold callbacks into parts of a
provider; held strongly, they would keep a provider nobody references (and its threads) alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["weakly"]


def weakly(method: Callable[..., None]) -> Callable[..., None]:
    """``method`` (a bound method), called only while its object is alive, without keeping it alive.

    Args:
        method: A bound method; once its object is collected, calls do nothing.

    Returns:
        A plain function taking the same arguments.
    """
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(*args)

    return call
