"""Which analytics SDK a provider sends through: named by ``sdk=``, or recognised from the client given.

Segment's ``segment-analytics-python`` is the default; RudderStack's ``rudder-sdk-python`` (a fork with
the same API) is chosen explicitly, or recognised from a ``rudderstack.analytics.Client`` passed as
``analytics=``. A client of neither (an in-memory double, a wrapper) is treated as Segment's.
"""

from __future__ import annotations

from segment_exposure.tracking.rudderstack_client import RUDDERSTACK
from segment_exposure.tracking.segment_client import SEGMENT, AnalyticsSdk

__all__ = ["SDK_NAMES", "choose_sdk", "sdk_named"]

_SDKS: dict[str, AnalyticsSdk] = {sdk.name: sdk for sdk in (SEGMENT, RUDDERSTACK)}

#: What ``sdk=`` takes.
SDK_NAMES: tuple[str, ...] = tuple(_SDKS)


def sdk_named(name: str) -> AnalyticsSdk:
    """The SDK called ``name``; a clear ``ValueError`` for any other name."""
    try:
        return _SDKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"sdk must be one of {', '.join(map(repr, SDK_NAMES))}, not {name!r}") from None


def choose_sdk(sdk: str | None, client: object = None) -> AnalyticsSdk:
    """The SDK for a provider given ``sdk=`` and ``analytics=`` (None when it builds its own client).

    A client recognised as one SDK's contradicts an explicit other ``sdk``: that is an error, not a guess.
    """
    recognised = next((s for s in _SDKS.values() if client is not None and s.owns(client)), None)
    if sdk is None:
        return recognised or SEGMENT
    chosen = sdk_named(sdk)
    if recognised is not None and recognised is not chosen:
        raise ValueError(
            f"sdk={sdk!r} but analytics= is {recognised.label}'s client ({type(client).__module__}); "
            f"pass sdk={recognised.name!r} or leave it out"
        )
    return chosen
