"""The provider as applications create it: at import time, in whichever process imports the app first
(a server's master before it forks workers, under preload). Shared by every app in this directory."""

from __future__ import annotations

import faulthandler
import os
import signal
from typing import Any

from segment_exposure import Exposure, SegmentExposureTrackingProvider

# A stop that overruns its bound makes the test send this signal: every thread prints its stack.
# (Not SIGUSR1/SIGUSR2 or SIGABRT: servers use those themselves.)
STACKS_SIGNAL = signal.SIGRTMIN + 1
faulthandler.register(STACKS_SIGNAL, all_threads=True)

provider = SegmentExposureTrackingProvider(
    os.environ["SEGMENT_WRITE_KEY"],
    host=os.environ["SEGMENT_HOST"],
    # Whose client the provider builds and posts through: "segment" (the default) or "rudderstack" (the
    # matrix runs its fork-sensitive rows with both; SEGMENT_HOST is then a RudderStackCollector).
    sdk=os.environ.get("EXPOSURE_SDK", "segment"),
    flush_timeout=float(os.environ.get("FLUSH_TIMEOUT", "5")),
    # What a server whose workers die of SIGTERM (Python's default: no exit hooks) needs.
    flush_on_sigterm=os.environ.get("FLUSH_ON_SIGTERM") == "1",
    # The client's consumer (Segment's or RudderStack's) gathers a batch for up to upload_interval
    # seconds: the matrix makes it long enough that exposures tracked right before SIGTERM are still
    # waiting, so only the exit flush can deliver them.
    client_options={"upload_interval": float(os.environ.get("UPLOAD_INTERVAL", "0.05"))},
)

EXPOSURE = Exposure("checkout", "treatment", "exp-1")


def track(user: str) -> dict[str, Any]:
    """Track one exposure for ``user``; what this process's provider says about it."""
    accepted = provider.track(EXPOSURE, {"user_id": user})
    return {"pid": os.getpid(), "accepted": accepted, "stats": provider.stats()}
