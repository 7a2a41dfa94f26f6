"""What a provider leaves running when it is garbage-collected without ``shutdown()``.

Its worker thread, and the Segment client it owns (with that client's consumer threads). Held apart from
the provider, so that the provider itself can be collected; its ``ProcessBinding`` calls ``release``.
"""

from __future__ import annotations

import logging
from typing import Any

from segment_exposure.tracking import segment_client
from segment_exposure.tracking.worker import ExposureWorker

__all__ = ["Leftovers"]

log = logging.getLogger(__name__)


class Leftovers:
    """A provider's running parts, to stop if it is collected.

    Attributes:
        worker: The provider's current worker (a forked child gets a new one).
        owned_client: The Segment client the provider made and so must stop, or None.
        closed: The provider was shut down: what was left is counted already.
    """

    __slots__ = ("closed", "owned_client", "worker")

    def __init__(self, worker: ExposureWorker, owned_client: Any) -> None:
        self.worker = worker
        self.owned_client = owned_client
        self.closed = False

    def release(self) -> None:
        """Stop the worker thread and the owned client's consumers, waiting for nothing; warn if that
        leaves exposures unsent."""
        left = self.worker.qsize()
        self.worker.stop()
        client = self.owned_client
        if client is not None:
            left += getattr(getattr(client, "queue", None), "unfinished_tasks", 0) or 0
            try:
                segment_client.stop_consumers(client, 0.0)  # asks them to stop; waits for nothing
            except RuntimeError:
                pass  # collected on a consumer thread itself, which cannot join itself; it stops anyway
        if left and not self.closed:
            log.warning(
                "segment-exposure: a provider was garbage-collected without shutdown(); "
                "up to %d queued exposure(s) were not sent",
                left,
            )
