"""A FastAPI app on AWS Lambda through Mangum, its exposures delivered before each response returns.

Handler setting: ``app.handler``. ``flush_after`` wraps the outermost callable, Mangum's handler, so the
flush runs after the app has produced the response and before Lambda gets it back.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from mangum import Mangum

from segment_exposure import Exposure, SegmentExposureTrackingProvider, flush_after

provider = SegmentExposureTrackingProvider(
    os.environ["SEGMENT_WRITE_KEY"], host=os.environ.get("SEGMENT_HOST")
)
app = FastAPI()


@app.get("/checkout/{user_id}")
def checkout(user_id: str) -> dict[str, str]:
    variant = "treatment" if sum(map(ord, user_id)) % 2 else "control"
    provider.track(Exposure("checkout-flow", variant, "exp-checkout-1"), {"user_id": user_id})
    return {"variant": variant}


handler = flush_after(provider)(Mangum(app, lifespan="off"))
