"""Prometheus metrics for the provider and the webhook, and CloudWatch metrics for the Lambda.

``register(provider)`` exports a provider's ``stats()``; ``segment-exposure serve --metrics-port`` exports
the webhook's counts; ``SEGMENT_EXPOSURE_EMF=1`` makes the Lambda handler log them in CloudWatch's embedded
metric format. prometheus-client is needed for the first two: ``pip install 'segment-exposure[metrics]'``.
"""

from __future__ import annotations

from typing import Any

from ._prom import INSTALL_HINT
from .provider import DEFAULT_NAME, exposition_registry, register, unregister

__all__ = ["INSTALL_HINT", "exposition_registry", "register", "register_from_setting", "unregister"]


def register_from_setting(provider: Any, setting: object) -> bool:
    """What the Flask, Django and ASGI integrations call with their ``METRICS`` option.

    ``True`` registers ``provider`` under the default label, a str under that label; ``None`` or ``False``
    does nothing. Returns whether it registered. Raises ImportError naming the extra when
    prometheus-client is missing, ValueError for any other value.
    """
    if setting is None or setting is False:
        return False
    if setting is True:
        register(provider, name=DEFAULT_NAME)
        return True
    if isinstance(setting, str) and setting:
        register(provider, name=setting)
        return True
    raise ValueError(f"the METRICS option must be True, False or a provider label (a str), got {setting!r}")
