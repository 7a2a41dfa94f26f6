"""Django integration: ``INSTALLED_APPS += ["segment_exposure.integrations.django"]``, one middleware.

``settings.SEGMENT_EXPOSURE`` (a dict) configures one provider per process; ``ExposureMiddleware``
binds each request's identity (see ``segment_exposure.bind_user``), so inside a view
``get_provider().track(exposure)`` and the Experiment integration's ``variant(None, flag)`` need no
user; system checks (``segment_exposure.E001`` ...) report a bad configuration before it serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._common import missing_framework

try:
    import django  # type: ignore[import-untyped]  # noqa: F401  (to fail early, naming the extra)
except ImportError as exc:
    raise ImportError(missing_framework("Django", "django")) from exc

if TYPE_CHECKING:
    from .apps import get_provider, shutdown
    from .middleware import ExposureMiddleware, default_identify

__all__ = ["ExposureMiddleware", "default_identify", "get_provider", "shutdown"]

_LAZY = {
    "ExposureMiddleware": "middleware",
    "default_identify": "middleware",
    "get_provider": "apps",
    "shutdown": "apps",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that listing the app in INSTALLED_APPS imports no more than Django needs at that point.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
