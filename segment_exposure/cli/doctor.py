"""``segment-exposure doctor``: audit a Segment export for what silently spoils experiment results.

Each check is a small function over one event; findings are counted with a few examples and a fix.
Severities: "error" and "warning" set the exit code; "info" never does (things an export cannot settle,
such as whether a destination filter on Segment's side keeps exposures from Segment's own Amplitude
destination).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from segment_exposure.delivery.coerce import read_string, read_time_ms
from segment_exposure.delivery.sources import RUDDERSTACK, check_source, detect_source
from segment_exposure.identity.id_rules import id_problem

from ..exposure import EXPOSURE_EVENT
from .records import BadRecord, iter_records

__all__ = ["CHECKS", "Finding", "audit", "load_flag_variants"]

SEVEN_DAYS_MS = 7 * 86_400_000
FUTURE_SLACK_MS = 5 * 60_000  # clock skew tolerated before a timestamp counts as "in the future"
AMPLITUDE_DESTINATIONS = ("Actions Amplitude", "Amplitude")
MAX_EXAMPLES = 3


@dataclass
class Finding:
    """One kind of problem: how often, where (examples), and what to do about it."""

    check: str
    severity: str  # "error", "warning" or "info" (never affects the exit code)
    title: str
    fix: str
    count: int = 0
    examples: list[str] = field(default_factory=list)
    breakdown: Counter[str] = field(default_factory=Counter)

    def add(self, where: str, detail: str | None = None) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(where)
        if detail is not None:
            self.breakdown[detail] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "title": self.title,
            "count": self.count,
            "examples": self.examples,
            "breakdown": dict(self.breakdown),
            "fix": self.fix,
        }


CHECKS: dict[str, tuple[str, str, str]] = {
    "misnamed_exposure": (
        "error",
        "exposure-like events under another name",
        "send exactly '$exposure'; Amplitude ignores any other name in experiment analysis",
    ),
    "missing_flag_key": (
        "error",
        "$exposure without a flag_key",
        "set properties.flag_key to the flag's key",
    ),
    "variant_value_not_key": (
        "error",
        "variant sent as its value where the flag has a key",
        "send the variant key (Variant.key), not Variant.value",
    ),
    "unset_variant": (
        "warning",
        "$exposure without a variant (unsets the user's experiment property)",
        "expected for default variants; otherwise send properties.variant",
    ),
    "invalid_id": (
        "error",
        "ids Amplitude will reject (too short, or on its invalid list)",
        "send real ids, or set min_id_length on the destination for short ones",
    ),
    "missing_message_id": (
        "error",
        "no messageId (retries cannot be deduplicated)",
        "let the Segment library set messageId; never strip it",
    ),
    "duplicate_message_id": (
        "warning",
        "the same messageId more than once",
        "normal after retries; if the events differ, the sender reuses ids",
    ),
    "device_id_mismatch": (
        "warning",
        "context.device.id disagrees with anonymousId",
        "Segment's Amplitude mapping prefers context.device.id: make it the Experiment device_id or drop it",
    ),
    "timestamp_future": (
        "error",
        "timestamp in the future",
        "send aware UTC timestamps; check the sender's clock",
    ),
    "timestamp_old": (
        "warning",
        "timestamp more than 7 days old",
        "Amplitude's insert_id dedupe covers 7 days: replays older than that can duplicate",
    ),
    "unparseable_timestamp": (
        "warning",
        "timestamp missing or unreadable (Amplitude then uses the upload time)",
        "send ISO 8601 timestamps",
    ),
    "double_routing": (
        "info",
        'exposures without integrations {"Actions Amplitude": false}',
        "fine with a destination filter on Segment's side (an export cannot show one); otherwise add the "
        "integrations flag so Segment's own Amplitude destination does not send a second copy",
    ),
    "not_json_object": ("error", "records that are not JSON objects", "export one Segment event per line"),
}


def load_flag_variants(flags: Any) -> dict[str, dict[str, set[str]]]:
    """From a flag config list (the ``/sdk/v2/flags`` format): flag -> {"keys": ..., "values": ...}."""
    result: dict[str, dict[str, set[str]]] = {}
    for flag in flags if isinstance(flags, list) else []:
        if not isinstance(flag, dict) or not isinstance(flag.get("key"), str):
            continue
        keys: set[str] = set()
        values: set[str] = set()
        for name, variant in (flag.get("variants") or {}).items():
            if isinstance(variant, dict):
                keys.add(str(variant.get("key", name)))
                if isinstance(variant.get("value"), str):
                    values.add(variant["value"])
        result[flag["key"]] = {"keys": keys, "values": values}
    return result


def _where(line: int, event: Mapping[str, Any]) -> str:
    mid = event.get("messageId")
    return f"line {line}" + (f" ({mid})" if isinstance(mid, str) else "")


def _is_exposure_like(name: str) -> bool:
    return name != EXPOSURE_EVENT and "exposure" in name.lower()


def audit(
    source: IO[str],
    *,
    flags: Mapping[str, Mapping[str, set[str]]] | None = None,
    min_id_length: int | None = None,
    now_ms: int | None = None,
    expect_integrations_flag: bool = False,
    events_source: str = "auto",
) -> tuple[list[Finding], int]:
    """Run every check over ``source``; returns the findings with a count, and how many records were read.

    ``expect_integrations_flag`` makes a missing ``integrations: {"Actions Amplitude": false}`` a warning
    (for pipelines that rely on the flag rather than on a destination filter); it is information otherwise.
    ``events_source`` is the translator's ``source``: RudderStack's events take ``anonymousId`` as the device
    id, so a different ``context.device.id`` is no problem for them.
    """
    check_source(events_source)
    findings = {name: Finding(name, *spec) for name, spec in CHECKS.items()}
    if expect_integrations_flag:
        findings["double_routing"].severity = "warning"
    seen_ids: dict[str, int] = {}
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    state = _Audit(findings, flags or {}, min_id_length, now_ms, events_source)
    total = 0
    for record in iter_records(source):
        total += 1
        if isinstance(record, BadRecord):
            state.add("not_json_object", f"line {record.line}")
            continue
        event = record.value
        if not isinstance(event, dict):
            state.add("not_json_object", f"line {record.line}")
            continue
        where = _where(record.line, event)
        _check_message_id(state, event, where, seen_ids)
        name = event.get("event")
        if event.get("type", "track") != "track" or not isinstance(name, str):
            continue
        if _is_exposure_like(name):
            state.add("misnamed_exposure", where, name)
            continue
        if name != EXPOSURE_EVENT:
            continue
        for check in _EXPOSURE_CHECKS:
            check(state, event, where)
    return [f for f in findings.values() if f.count], total


def _check_message_id(audit: _Audit, event: Mapping[str, Any], where: str, seen: dict[str, int]) -> None:
    mid = event.get("messageId")
    if not isinstance(mid, str) or not mid:
        audit.add("missing_message_id", where)
        return
    seen[mid] = seen.get(mid, 0) + 1
    if seen[mid] == 2:
        audit.add("duplicate_message_id", where)


@dataclass
class _Audit:
    """What every check needs: the findings to add to and the audit's settings."""

    findings: dict[str, Finding]
    flags: Mapping[str, Mapping[str, set[str]]]
    min_id_length: int | None
    now_ms: int
    source: str = "auto"

    def rudderstack(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` gets RudderStack's Amplitude mapping (the translator's ``source`` rule)."""
        if self.source != "auto":
            return self.source == RUDDERSTACK
        return isinstance(event, dict) and detect_source(event) == RUDDERSTACK

    def add(self, check: str, where: str, detail: str | None = None) -> None:
        self.findings[check].add(where, detail)


_Check = Callable[[_Audit, Mapping[str, Any], str], None]


def _section(obj: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = obj.get(name)
    return value if isinstance(value, dict) else {}


def _check_flag_and_variant(audit: _Audit, event: Mapping[str, Any], where: str) -> None:
    props = _section(event, "properties")
    flag = props.get("flag_key")
    if not isinstance(flag, str) or not flag:
        audit.add("missing_flag_key", where)
        return
    variant = props.get("variant")
    if variant is None:
        audit.add("unset_variant", where, flag)
        return
    known = audit.flags.get(flag)
    if known and isinstance(variant, str) and variant not in known["keys"] and variant in known["values"]:
        audit.add("variant_value_not_key", where, f"{flag}: {variant}")


def _check_ids(audit: _Audit, event: Mapping[str, Any], where: str) -> None:
    context = _section(event, "context")
    device = _section(context, "device")
    for field_name, value in (
        ("userId", event.get("userId")),
        ("anonymousId", event.get("anonymousId")),
        ("context.device.id", device.get("id")),
    ):
        text = value if isinstance(value, str) else None if value is None else read_string(value)
        if text is not None:  # a numeric id is sent as its string form, so it is checked as one
            problem = id_problem(text, min_id_length=audit.min_id_length)
            if problem:
                audit.add("invalid_id", where, f"{field_name} {text[:40]!r}")
    device_id, anonymous_id = device.get("id"), event.get("anonymousId")
    # RudderStack's mapping takes anonymousId first, so a different context.device.id does not matter there.
    if (
        isinstance(device_id, str)
        and device_id
        and device_id != anonymous_id
        and not audit.rudderstack(event)
    ):
        audit.add("device_id_mismatch", where)


def _check_time(audit: _Audit, event: Mapping[str, Any], where: str) -> None:
    # The time the translator sends: the first readable of these (as Segment reads dates).
    at = next(
        (
            t
            for k in ("timestamp", "originalTimestamp", "receivedAt")
            if (t := read_time_ms(event.get(k))) is not None
        ),
        None,
    )
    if at is None:
        audit.add("unparseable_timestamp", where)
        return
    received = read_time_ms(event.get("receivedAt"))
    reference = audit.now_ms if received is None else received
    if at > reference + FUTURE_SLACK_MS:
        audit.add("timestamp_future", where)
    elif at < reference - SEVEN_DAYS_MS:
        audit.add("timestamp_old", where)


def _check_routing(audit: _Audit, event: Mapping[str, Any], where: str) -> None:
    integrations = _section(event, "integrations")
    if any(integrations.get(name) is False for name in AMPLITUDE_DESTINATIONS):
        return
    if integrations.get("All") is False and not any(integrations.get(n) for n in AMPLITUDE_DESTINATIONS):
        return
    audit.add("double_routing", where)


_EXPOSURE_CHECKS: tuple[_Check, ...] = (_check_flag_and_variant, _check_ids, _check_time, _check_routing)
