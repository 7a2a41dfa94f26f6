"""Shared cases for the delivery tests: fast retry settings, the fault matrix and sample events.

The Python client, the destination and the JavaScript function are held to the same matrix, so it lives
in one place.
"""

from __future__ import annotations

from typing import Any

from segment_exposure import AmplitudeEmulator

#: Settings that make retries and holds take milliseconds, not seconds.
FAST: dict[str, Any] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "backoff_jitter": 0.01,
    "throttle_wait": 0.05,
    "timeout": (2.0, 3.0),
}

#: (fault, inject() options): every row of Amplitude's response table, and a clean run.
FAULT_MATRIX: list[tuple[str | None, dict[str, Any]]] = [
    (None, {}),
    ("500_after_ingest", {}),
    ("500", {}),
    ("502", {}),
    ("504", {}),
    ("503", {"count": 3}),
    ("reset", {"count": 2}),
    ("reset_after_ingest", {}),
    ("slow", {"delay": 0.2}),
    ("non_json", {}),
    ("non_json", {"status": 502}),
    ("non_json", {"status": 504}),
    ("403", {}),
    ("413", {}),
    ("429", {}),
]
SIZES = [1, 20, 1000, 4000]
FAULT_IDS = [f"{f}-{o.get('status', '')}{o.get('count', '')}" if o else str(f) for f, o in FAULT_MATRIX]


def assert_ingested_once(emulator: AmplitudeEmulator, insert_ids: set[str]) -> None:
    """Amplitude holds each of ``insert_ids`` exactly once, and nothing else."""
    assert emulator.wait_for_ingested(len(insert_ids), timeout=10)
    ingested = [e["insert_id"] for e in emulator.ingested]
    assert len(ingested) == len(insert_ids), "each valid event exactly once, no invalid one"
    assert set(ingested) == insert_ids


def segment_event(i: int, prefix: str = "msg", **fields: Any) -> dict[str, Any]:
    """A valid Segment ``$exposure`` track event with message id ``{prefix}-{i:06d}``, ``fields`` replaced."""
    event: dict[str, Any] = {
        "type": "track",
        "event": "$exposure",
        "userId": f"user-{i:06d}",
        "anonymousId": f"anon-{i:06d}",
        "messageId": f"{prefix}-{i:06d}",
        "timestamp": "2026-11-24T10:00:00.123Z",
        "properties": {"flag_key": "checkout", "variant": "treatment", "experiment_key": "exp-1"},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
    }
    event.update(fields)
    return event
