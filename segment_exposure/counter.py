"""A counter that is exact under threads without taking a lock on the hot path.

Shared by the provider's statistics and the identity module's count of ignored cookie values.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

__all__ = ["Counter"]


class Counter:
    """A monotonically increasing counter.

    ``next()`` on ``itertools.count`` runs in C under the GIL, so increments from many threads are never
    lost, and it is several times cheaper than taking a lock.
    """

    __slots__ = ("_base", "_count")

    def __init__(self) -> None:
        self._count = itertools.count()
        self._base = 0

    def incr(self, n: int = 1) -> None:
        if n == 1:
            next(self._count)
        else:
            for _ in range(n):
                next(self._count)

    @property
    def value(self) -> int:
        # count's repr is "count(N)": reading it does not advance it.
        return int(repr(self._count)[6:-1]) - self._base

    @property
    def incr_one(self) -> Callable[[], object]:
        """A bound ``next`` for the hottest paths; stays valid across ``reset()``."""
        return self._count.__next__

    def reset(self) -> None:
        self._base += self.value
