"""Reading Amplitude's 400 and 429 answers: which events of a request they name, and how.

Pure functions over the request's events and the answer's JSON body, so each rule can be read (and
tested) apart from the send that acts on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from segment_exposure.delivery.outcomes import EventOutcome, Status

__all__ = ["rejected_by_400", "sort_throttled"]


def _int_list(value: Any) -> list[int]:
    if not isinstance(value, list):
        return []
    return [v for v in value if v.__class__ is int]


def _str_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {k for k in value if isinstance(k, str)}
    if isinstance(value, list):
        return {k for k in value if isinstance(k, str)}
    return set()


def sort_throttled(
    chunk: list[int], events: Sequence[Mapping[str, Any]], body: dict[str, Any]
) -> tuple[list[int], list[int], list[int]]:
    """A 429's events as ``(now_ok, hold, quota)``: to resend at once, to hold, over their daily quota.

    ``throttled_events`` names the events precisely; the id maps are the fallback without it. An answer
    that names no one holds them all.
    """
    listed = body.get("throttled_events")
    positions = set(_int_list(listed))
    users = _str_keys(body.get("throttled_users"))
    devices = _str_keys(body.get("throttled_devices"))
    quota_users = _str_keys(body.get("exceeded_daily_quota_users"))
    quota_devices = _str_keys(body.get("exceeded_daily_quota_devices"))
    now_ok: list[int] = []
    hold: list[int] = []
    quota: list[int] = []
    for pos, i in enumerate(chunk):
        event = events[i]
        uid = event.get("user_id")
        did = event.get("device_id")
        uid = uid if isinstance(uid, str) else None
        did = did if isinstance(did, str) else None
        if isinstance(listed, list):
            throttled = pos in positions
        else:
            throttled = (uid is not None and (uid in users or uid in quota_users)) or (
                did is not None and (did in devices or did in quota_devices)
            )
        if not throttled:
            now_ok.append(i)
        elif (uid is not None and uid in quota_users) or (did is not None and did in quota_devices):
            quota.append(i)
        else:
            hold.append(i)
    if not hold and not quota:
        hold, now_ok = now_ok, []  # the answer names no one: hold them all
    if not hold and not quota:
        hold, now_ok = now_ok, []
    return now_ok, hold, quota


def rejected_by_400(
    chunk: list[int], events: Sequence[Mapping[str, Any]], body: dict[str, Any], error: str
) -> dict[int, EventOutcome]:
    """The events of ``chunk`` a 400 names, by position in the request, each with why it is rejected."""
    size = len(chunk)
    named: dict[int, EventOutcome] = {}

    def name(pos: int, code: str, reason: str) -> None:
        if 0 <= pos < size and pos not in named:
            named[pos] = EventOutcome(Status.REJECTED, code, f"{reason} (HTTP 400: {error})")

    for map_key, code, what in (
        ("events_with_invalid_fields", "invalid_fields", "Amplitude found an invalid value in field"),
        ("events_with_missing_fields", "missing_fields", "Amplitude found a required field missing:"),
        (
            "events_with_invalid_id_lengths",
            "invalid_id",
            "Amplitude refused the id (too short for min_id_length, or on its invalid list) in",
        ),
    ):
        fields = body.get(map_key)
        if isinstance(fields, dict):
            for field_name, positions in fields.items():
                for pos in _int_list(positions):
                    name(pos, code, f"{what} {field_name!r}; fix the event, it will never be accepted")
    for pos in _int_list(body.get("silenced_events")):
        name(pos, "silenced", "Amplitude silenced this event (its device sent too many events)")
    silenced_devices = _str_keys(body.get("silenced_devices"))
    if silenced_devices:
        for pos, i in enumerate(chunk):
            did = events[i].get("device_id")
            if isinstance(did, str) and did in silenced_devices:
                name(pos, "silenced", "Amplitude silenced this event's device (too many events)")
    return named
