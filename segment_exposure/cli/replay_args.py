"""The ``replay`` subcommand's arguments, apart from the command so that ``--help`` stays quick.

The defaults are repeated from :mod:`segment_exposure.replay` (importing it would load the delivery
code for every command); tests/test_replay.py checks that they agree.
"""

from __future__ import annotations

import argparse

__all__ = [
    "DEFAULT_MAX_LATENESS_DAYS",
    "DEFAULT_PER_ID_RATE",
    "DEFAULT_STATE_FILE",
    "EPILOG",
    "add_arguments",
]

DEFAULT_STATE_FILE = "segment-exposure-replay.sqlite3"
DEFAULT_MAX_LATENESS_DAYS = 7.0
DEFAULT_PER_ID_RATE = 300.0

EPILOG = """examples:
  AMPLITUDE_API_KEY=... segment-exposure replay ./segment-archive --since 2024-05-01 --until 2024-06-01
  segment-exposure replay s3://my-bucket/segment-logs/SOURCE_ID --dry-run
  zcat 1714521600000/*.gz | segment-exposure replay - --state replay.sqlite3
  segment-exposure replay s3://my-bucket --shard 2/4 --rate 20000   # the 2nd of 4 machines
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``replay`` subcommand's arguments."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file, folder, s3://bucket/prefix, or -")
    parser.add_argument(
        "--state", default=None, help=f"what was delivered, for reruns (default ./{DEFAULT_STATE_FILE})"
    )
    parser.add_argument("--since", default=None, help="first event time to replay (ISO 8601, UTC if no zone)")
    parser.add_argument("--until", default=None, help="replay events before this time (ISO 8601)")
    parser.add_argument(
        "--max-lateness",
        type=float,
        default=DEFAULT_MAX_LATENESS_DAYS,
        metavar="DAYS",
        help="how long after their time events may reach Segment: day folders received later than "
        f"--until plus this are skipped (default {DEFAULT_MAX_LATENESS_DAYS:g})",
    )
    parser.add_argument("--dry-run", action="store_true", help="read and translate everything, send nothing")
    parser.add_argument(
        "--endpoint", default=None, help="full Batch API URL (default: Amplitude's, by region)"
    )
    parser.add_argument("--region", default=None, help="US or EU (default: $AMPLITUDE_REGION or US)")
    parser.add_argument("--rate", type=float, default=None, metavar="N", help="at most N events/s overall")
    parser.add_argument(
        "--per-device-rate",
        type=float,
        default=DEFAULT_PER_ID_RATE,
        metavar="N",
        help=f"at most N events/s per device and per user (default {DEFAULT_PER_ID_RATE:g})",
    )
    parser.add_argument("--shard", default=None, metavar="K/N", help="replay only shard K of N (by file)")
    parser.add_argument("--min-id-length", type=int, default=None)
    parser.add_argument(
        "--exposure-event", action="append", default=None, help="event name to treat as an exposure"
    )
    parser.add_argument(
        "--sync-user-properties",
        action="store_true",
        help="let replayed events update users' properties (by default they carry "
        '"$skip_user_properties_sync": true)',
    )
    parser.add_argument("--progress", action="store_true", help="show progress even when stderr is not a TTY")
