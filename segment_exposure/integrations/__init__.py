"""Framework integrations: one line of set-up binds each request's identity for the provider.

Each framework has its own module (``segment_exposure.integrations.flask``,
``segment_exposure.integrations.django``) that imports its framework only when it is imported itself,
so installing segment-exposure never pulls Flask or Django in, and a missing framework is reported
with the extra to install.
"""

from __future__ import annotations

__all__: list[str] = []
