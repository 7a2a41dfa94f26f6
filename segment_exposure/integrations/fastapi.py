"""FastAPI dependencies: the provider or the Experiment client of ``SegmentExposureMiddleware``.

from segment_exposure.integrations.fastapi import ExperimentClient, ExposureProvider

@app.get("/checkout")
def checkout(experiment: ExperimentClient) -> dict[str, str]:
    return {"variant": experiment.variant(None, "checkout-flow").key}
"""

from __future__ import annotations

from typing import Annotated, Any

from ._common import missing_framework
from .asgi import SegmentExposureMiddleware, get_experiment, get_provider

try:
    from fastapi import Depends
except ImportError as exc:
    raise ImportError(missing_framework("FastAPI", "fastapi")) from exc

__all__ = [
    "ExperimentClient",
    "ExposureProvider",
    "SegmentExposureMiddleware",
    "get_experiment",
    "get_provider",
]

#: An endpoint parameter annotated with this receives the middleware's provider.
ExposureProvider = Annotated[Any, Depends(get_provider)]
#: An endpoint parameter annotated with this receives the middleware's ``ExposureTrackingClient``.
ExperimentClient = Annotated[Any, Depends(get_experiment)]
