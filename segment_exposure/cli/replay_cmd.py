"""``segment-exposure replay``: archived Segment events (files, folders, ``s3://``, stdin) -> Amplitude.

Why these defaults: the Batch API (what Amplitude's backfill guide prescribes), 300 events/s per device,
and ``"$skip_user_properties_sync": true`` on every replayed event, because Amplitude applies user
properties in the order it ingests events, not by event time: replaying last month's exposures would
otherwise set ``[Experiment] <flag>`` back to last month's variant for users reassigned since
(``--sync-user-properties`` turns this off, e.g. for a project that has never seen these users). The
translator options are ``serve``'s (``AMPLITUDE_MIN_ID_LENGTH``, ``AMPLITUDE_EXPOSURE_EVENTS``, ...), so a
replayed event is the event the webhook would have sent.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import IO

from segment_exposure.cli.errors import UserError
from segment_exposure.delivery.amplitude import AmplitudeClient
from segment_exposure.replay import (
    DEFAULT_STATE_FILE,
    Catalog,
    DeliveryState,
    Replay,
    ReplayOptions,
    ReplayReport,
    ReplayStopped,
    S3Archive,
    S3Error,
    Shard,
    StateError,
    TimeWindow,
)
from segment_exposure.server.settings import ConfigError, ServerSettings

from .output import print_table

__all__ = ["run_replay"]


def _options(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[ServerSettings, ReplayOptions]:
    # serve's settings, so the translator options are the same; the endpoint is --endpoint alone, since
    # AMPLITUDE_ENDPOINT is serve's HTTP V2 URL and replay posts Batch-sized bodies.
    env = {k: v for k, v in environ.items() if k != "AMPLITUDE_ENDPOINT"}
    dry_key = "dry-run" if args.dry_run and not env.get("AMPLITUDE_API_KEY", "").strip() else None
    try:
        settings = ServerSettings.from_environ(
            env,
            api_key=dry_key,
            region=args.region,
            endpoint=args.endpoint,
            min_id_length=args.min_id_length,
            exposure_events=args.exposure_event,
        )
        window = TimeWindow.from_text(args.since, args.until, args.max_lateness)
    except (ConfigError, ValueError) as exc:
        raise UserError(str(exc)) from None
    for name in ("rate", "per_device_rate"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    options = ReplayOptions(
        exposure_events=settings.exposure_events,
        min_id_length=settings.min_id_length,
        window=window,
        skip_user_properties_sync=not args.sync_user_properties,
        per_id_rate=args.per_device_rate,
        rate=args.rate,
    )
    return settings, options


def run_replay(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the replay; 0 when everything selected was delivered, 1 when anything was not."""
    settings, options = _options(args, environ)
    try:
        shard = Shard.parse(args.shard) if args.shard else Shard()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if "-" in args.paths and (shard.count > 1 or args.paths.count("-") > 1):
        raise UserError("stdin (-) can be read once, and cannot be sharded")
    catalog = Catalog(options.window, shard, s3_lister=S3Archive())
    try:
        files = list(catalog.files(args.paths))
    except FileNotFoundError as exc:
        raise UserError(f"no such file or folder: {exc}") from None
    except (S3Error, ValueError) as exc:
        raise UserError(str(exc)) from None

    scratch = tempfile.mkdtemp(prefix="segment-exposure-replay-") if args.dry_run else None
    state_path = f"{scratch}/dry-run.sqlite3" if scratch else (args.state or DEFAULT_STATE_FILE)
    try:
        state = DeliveryState(state_path)
    except StateError as exc:
        raise UserError(str(exc)) from None
    client = None
    if not args.dry_run:
        client = AmplitudeClient(
            settings.api_key,
            region=settings.region,
            api="batch",
            endpoint=settings.endpoint,
            min_id_length=settings.min_id_length,
            deadline=options.send_deadline,
            timeout=(5.0, 60.0),
        )
    progress = _Progress(sys.stderr, len(files), force=args.progress)
    replay = Replay(options, state, client, progress=progress)
    # What is loaded by now lives until exit: frozen out of the collector's reach; and a collection per
    # 50,000 new objects rather than 700, since a replay makes ~30 acyclic objects per event (~5% CPU).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    stopped: str | None = None
    try:
        report = replay.run(files)
    except ReplayStopped as exc:
        report, stopped = replay.report, str(exc)
    finally:
        progress.done()
        state.close()
        if client is not None:
            client.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    _print_report(report, catalog, len(files), args.dry_run, progress.elapsed(), state_path)
    if stopped is not None:
        raise UserError(f"stopped: Amplitude refused the configuration ({stopped})")
    return 0 if report.complete(dry_run=args.dry_run) else 1


class _Progress:
    """Files, events/s and an ETA (by files) on stderr: when it is a TTY, or with ``--progress``."""

    def __init__(self, stream: IO[str], total_files: int, *, force: bool) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._on = force or self._tty
        self._total = total_files
        self._started = time.monotonic()
        self._shown = 0.0
        self._written = False

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def __call__(self, report: ReplayReport, name: str | None) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if now - self._shown < (0.5 if self._tty else 5.0):
            return
        self._shown = now
        elapsed = now - self._started
        rate = report.lines / elapsed if elapsed > 0 else 0.0
        done = max(0, report.files - 1)
        eta = "?"
        if done and self._total > done:
            seconds = int(elapsed / done * (self._total - done))
            eta = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        text = (
            f"files {report.files}/{self._total}  lines {report.lines:,}  {rate:,.0f}/s  "
            f"delivered {report.delivered:,}  ETA {eta}"
        )
        self._stream.write(("\r" + text + "\x1b[K") if self._tty else text + "\n")
        self._stream.flush()
        self._written = True

    def done(self) -> None:
        if self._written and self._tty:
            self._stream.write("\n")
            self._stream.flush()


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_report(
    report: ReplayReport, catalog: Catalog, files: int, dry_run: bool, elapsed: float, state: str
) -> None:
    for problem in report.problems:
        print(f"segment-exposure replay: {problem.kind}: {problem}", file=sys.stderr)
    for kind, count in sorted(report.problem_counts.items()):
        shown = sum(p.kind == kind for p in report.problems)
        if count > shown:
            print(f"segment-exposure replay: ... and {count - shown} more {kind} problems", file=sys.stderr)
    users = f"{'~' if report.users.estimated else ''}{len(report.users):,}"
    rows: list[tuple[str, object]] = [
        ("files read", f"{report.files:,} of {files:,}"),
        ("day folders skipped unread (outside --since/--until)", len(catalog.skipped_days)),
        ("files left to other shards", catalog.other_shards),
        ("lines read", f"{report.lines:,}"),
        ("broken lines (not JSON, not UTF-8, too long)", report.broken_lines),
        ("truncated files (complete lines before the cut kept)", report.truncated_files),
        ("unreadable files", report.unreadable_files),
        ("other events (not exposures)", f"{report.other_events:,}"),
        ("exposures read", f"{report.exposures:,}"),
        ("refused by the translator (or no messageId)", report.refused + report.no_insert_id),
        ("outside --since/--until", report.outside_window),
        ("repeats (same insert_id in this run)", f"{report.repeated:,}"),
        ("delivered by an earlier run", f"{report.delivered_before:,}"),
        ("rejected by Amplitude in an earlier run", report.rejected_before),
        ("would send" if dry_run else "sent", f"{report.selected:,}"),
    ]
    if not dry_run:
        rows += [
            ("delivered", f"{report.delivered:,}"),
            ("rejected by Amplitude", report.rejected),
            ("undelivered (retry later: run again)", report.undelivered),
            ("requests", f"{report.requests:,}"),
        ]
    rows += [
        ("users", users),
        ("event time range", f"{_when(report.first_time)} .. {_when(report.last_time)}"),
    ]
    mode = "dry run, nothing sent" if dry_run else f"state {state}"
    print_table(f"segment-exposure replay ({mode}, {elapsed:.1f} s)", ("count", "value"), rows)
    flag_rows = [
        (flag, variant, f"{n:,}", "-" if dry_run else f"{report.delivered_flags[(flag, variant)]:,}")
        for (flag, variant), n in sorted(report.flags.items())
    ]
    if flag_rows:
        column = "would send" if dry_run else "sent"
        print_table("exposures per flag and variant", ("flag", "variant", column, "delivered"), flag_rows)
    reconciles = report.accounted == report.exposures
    if dry_run:
        verdict = "dry run: nothing sent" if reconciles else "dry run: COUNTS DO NOT RECONCILE"
    elif not reconciles:
        verdict = "COUNTS DO NOT RECONCILE"
    elif report.complete():
        verdict = "reconciled: every exposure selected was delivered once"
    else:
        verdict = "incomplete: see the problems above; a rerun sends only what is missing"
    print(verdict)
