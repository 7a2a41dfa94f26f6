"""Replaying archived Segment events into Amplitude, each ``$exposure`` exactly once.

``segment-exposure replay`` (:mod:`segment_exposure.cli.replay_cmd`) puts these together: a
:class:`Catalog` of archive files (local, ``s3://`` through :class:`S3Archive`, stdin), read line by line
(:func:`iter_lines`, truncated gzip files included), translated as ``serve`` translates, deduplicated
against a :class:`DeliveryState` and sent through Amplitude's Batch API by :class:`Replay`, which
accounts for every event in a :class:`ReplayReport`.
"""

from __future__ import annotations

from .archive import ArchiveFile, Catalog, Shard, day_of
from .lines import Cut, LongLine, iter_lines
from .pacing import DEFAULT_PER_ID_RATE, IdPacer, RateLimiter
from .report import DistinctCounter, Problem, ReplayReport
from .runner import SKIP_USER_PROPERTIES_SYNC, Replay, ReplayOptions, ReplayStopped, Sender
from .s3 import S3Archive, S3Error
from .state import DEFAULT_STATE_FILE, Claim, DeliveryState, StateError
from .window import DAY_MS, DEFAULT_MAX_LATENESS_DAYS, TimeWindow, parse_time

__all__ = [
    "DAY_MS",
    "DEFAULT_MAX_LATENESS_DAYS",
    "DEFAULT_PER_ID_RATE",
    "DEFAULT_STATE_FILE",
    "SKIP_USER_PROPERTIES_SYNC",
    "ArchiveFile",
    "Catalog",
    "Claim",
    "Cut",
    "DeliveryState",
    "DistinctCounter",
    "IdPacer",
    "LongLine",
    "Problem",
    "RateLimiter",
    "Replay",
    "ReplayOptions",
    "ReplayReport",
    "ReplayStopped",
    "S3Archive",
    "S3Error",
    "Sender",
    "Shard",
    "StateError",
    "TimeWindow",
    "day_of",
    "iter_lines",
    "parse_time",
]
