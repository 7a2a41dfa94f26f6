"""An AWS Lambda handler that tracks Experiment exposures and delivers them before it returns.

Lambda freezes the process as soon as the handler returns, and later ends it without notice: the
provider's background thread would never send what the invocation queued. ``flush_after`` posts it,
in one request, before the handler returns, within the time the invocation has left.

Handler setting: ``handler.lambda_handler``. Environment: ``SEGMENT_WRITE_KEY`` (and ``SEGMENT_HOST``
for anything but Segment's US API).
"""

from __future__ import annotations

import os
from typing import Any

from segment_exposure import Exposure, SegmentExposureTrackingProvider, flush_after

# Built once per execution environment (at cold start) and reused by every invocation it serves.
provider = SegmentExposureTrackingProvider(
    os.environ["SEGMENT_WRITE_KEY"], host=os.environ.get("SEGMENT_HOST")
)


def variant_for(user_id: str) -> str:
    """Stands in for your flag evaluation (e.g. segment_exposure.experiment.ExposureTrackingClient)."""
    return "treatment" if sum(map(ord, user_id)) % 2 else "control"


@flush_after(provider)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    user_id = event["user_id"]
    variant = variant_for(user_id)
    provider.track(Exposure("checkout-flow", variant, "exp-checkout-1"), {"user_id": user_id})
    return {"statusCode": 200, "variant": variant}
