"""``segment-exposure translate``: Segment events in, Amplitude events out, as JSON lines."""

from __future__ import annotations

import json
from typing import IO

from segment_exposure.delivery.errors import PermanentError
from segment_exposure.delivery.translate import to_amplitude_event

from .records import BadRecord, iter_records

__all__ = ["run_translate"]


def run_translate(
    source: IO[str],
    out: IO[str],
    err: IO[str],
    *,
    min_id_length: int | None = None,
    exposure_events: tuple[str, ...] = ("$exposure",),
    strict: bool = False,
    events_source: str = "auto",
) -> int:
    """Translate every record; report each failure on ``err`` with its line and error class.

    Events with odd secondary fields are repaired rather than failed (see
    `segment_exposure.delivery.translate.to_amplitude_event`); the summary counts them, and the repairs
    themselves are logged at DEBUG by ``segment_exposure.delivery.translate``.

    ``events_source`` is the translator's ``source`` (``auto``, ``segment`` or ``rudderstack``).

    Returns the exit code: 0, or 1 when ``strict`` and anything failed.
    """
    translated = failed = repaired = 0
    for record in iter_records(source):
        if isinstance(record, BadRecord):
            failed += 1
            err.write(f"line {record.line}: InvalidEventPayload: {record.error}\n")
            continue
        repairs: list[str] = []
        try:
            event = to_amplitude_event(
                record.value,
                min_id_length=min_id_length,
                exposure_events=exposure_events,
                source=events_source,
                repairs=repairs,
            )
        except PermanentError as exc:
            failed += 1
            err.write(f"line {record.line}: {type(exc).__name__}: {exc}\n")
            continue
        out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
        translated += 1
        repaired += bool(repairs)
    err.write(f"translated {translated} ({repaired} with repaired fields), failed {failed}\n")
    return 1 if strict and failed else 0
