"""At-fork hooks registered on first use, never at import: importing the package changes nothing."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["after_fork_in_child"]

_registered: set[Callable[[], object]] = set()
_lock = threading.Lock()


def after_fork_in_child(hook: Callable[[], object]) -> None:
    """Run ``hook`` in each child after ``os.fork()``; registering the same hook again does nothing.

    ``os.register_at_fork`` has no way to unregister, so each module registers one function, once, when
    it first has something a child would need to reset.
    """
    if hook in _registered:
        return
    with _lock:
        if hook not in _registered:
            os.register_at_fork(after_in_child=hook)
            _registered.add(hook)
