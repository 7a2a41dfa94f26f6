"""prometheus-client, imported only when metrics are used, with an error that names the extra."""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["INSTALL_HINT", "MULTIPROC_ENV", "multiprocess_dir", "prometheus"]

INSTALL_HINT = "pip install 'segment-exposure[metrics]'"

#: The variable that switches prometheus-client into multiprocess mode (it also reads the lower-case form).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prometheus() -> ModuleType:
    """The ``prometheus_client`` module; ImportError naming the ``metrics`` extra when it is missing."""
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(f"metrics need prometheus-client, which is not installed: {INSTALL_HINT}") from None
    return prometheus_client


def multiprocess_dir() -> str | None:
    """The multiprocess directory when prometheus-client's multiprocess mode is on in this process."""
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None
