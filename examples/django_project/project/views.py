"""One experiment-driven view: the request's identity is bound by ExposureMiddleware."""

from __future__ import annotations

import hashlib
import os

from django.http import HttpRequest, JsonResponse

from segment_exposure import Exposure, bound_user, identity_from_user
from segment_exposure.integrations.django import get_provider

FLAG = "checkout-flow"
EXPERIMENT = "exp-checkout-2026"


def assign(unit: str | None) -> str:
    """A stand-in for Amplitude Experiment's bucketing (the Experiment integration does it for real)."""
    digest = hashlib.sha256(f"{FLAG}:{unit}".encode()).digest()
    return "treatment" if digest[0] % 2 else "control"


def checkout(request: HttpRequest) -> JsonResponse:
    user_id, device_id = identity_from_user(bound_user())
    variant = assign(user_id or device_id)
    # The page reads the flag twice (banner and button); the provider sends one exposure.
    get_provider().track(Exposure(FLAG, variant, EXPERIMENT))
    get_provider().track(Exposure(FLAG, variant, EXPERIMENT))
    return JsonResponse({"pid": os.getpid(), "user_id": user_id, "device_id": device_id, "variant": variant})
