"""A local stand-in for Segment when no SEGMENT_WRITE_KEY is set: one collector per process."""

from __future__ import annotations

from segment_exposure import SegmentCollector

WRITE_KEY = "local-write-key"

_collector: SegmentCollector | None = None


def collector() -> SegmentCollector:
    global _collector
    if _collector is None:
        _collector = SegmentCollector(WRITE_KEY).start()
    return _collector
