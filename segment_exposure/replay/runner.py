"""The replay itself: archive lines -> ``$exposure`` events -> Amplitude's Batch API, once each.

Why one thread and this order (read, translate, claim in the state, pace, send, record): every event is
in exactly one place at any moment (a line being read, a batch being claimed, the ready list, the deferred
heap, a request in flight) and every place ends in a counter of :class:`ReplayReport`, so nothing is lost
silently; memory is bounded by those places, not by the archive. Sending blocks reading, which keeps
a slow Amplitude from letting read-ahead pile up. The Amplitude client already retries 5xx and resets with
backoff and holds throttled events; what it hands back as "retry later" is deferred and resent (up to
``max_rounds`` times), and a configuration error (a wrong key or URL) stops the run, since every later
request would fail the same way.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from segment_exposure.delivery.amplitude import DeliveryResult, Status
from segment_exposure.delivery.errors import PermanentError
from segment_exposure.delivery.translate import DEFAULT_EXPOSURE_EVENTS, to_amplitude_event

from .archive import ArchiveFile
from .lines import Cut, LongLine, iter_lines
from .pacing import DEFAULT_PER_ID_RATE, IdPacer, RateLimiter
from .report import ReplayReport
from .state import DeliveryState
from .window import TimeWindow

__all__ = ["SKIP_USER_PROPERTIES_SYNC", "Replay", "ReplayOptions", "ReplayStopped", "Sender"]

#: Amplitude's per-event switch: the event neither reads nor updates the user's stored properties.
SKIP_USER_PROPERTIES_SYNC = "$skip_user_properties_sync"
#: Events claimed in the state per query.
_CLAIM_BATCH = 2000
#: Deferred events held (per-id pacing) before reading waits for them to go.
_MAX_DEFERRED = 50_000
#: Seconds a batch the client handed back as "retry later" waits, times its round (Amplitude asks ~15 s).
_RETRY_PAUSE = 15.0


class Sender(Protocol):
    """What the replay needs of ``AmplitudeClient``."""

    def send(
        self, events: Sequence[Mapping[str, Any]], *, deadline: float | None = None
    ) -> DeliveryResult: ...


class ReplayStopped(Exception):
    """Amplitude refuses every request (wrong API key, wrong URL): the run stops, its state kept."""


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How events are selected, translated and paced (the translator options as ``serve`` has them)."""

    exposure_events: tuple[str, ...] = DEFAULT_EXPOSURE_EVENTS
    min_id_length: int | None = None
    window: TimeWindow = field(default_factory=TimeWindow)
    skip_user_properties_sync: bool = True
    per_id_rate: float = DEFAULT_PER_ID_RATE
    rate: float | None = None
    #: Events per ``send`` call: the client splits them into requests of at most 2000 sent in parallel.
    send_events: int = 8000
    #: Seconds one ``send`` call may take, retries and throttling holds included.
    send_deadline: float = 300.0
    #: Sends of one event that came back "retry later" before it is counted as undelivered.
    max_rounds: int = 4


class _Item:
    """An event on its way, with where it came from (for reports) and how often it was sent."""

    __slots__ = ("attempts", "event", "flag", "insert_id", "line", "name", "variant")

    def __init__(self, event: dict[str, Any], insert_id: str, name: str, line: int) -> None:
        self.event = event
        self.insert_id = insert_id
        self.name = name
        self.line = line
        props = event.get("event_properties") or {}
        self.flag: str = props.get("flag_key", "")
        variant = props.get("variant")
        self.variant = variant if variant.__class__ is str else "(none)" if variant is None else str(variant)
        self.attempts = 0

    @property
    def where(self) -> str:
        return f"{self.name}:{self.line}"


class Replay:
    """One run over archive files. ``client`` None is a dry run: everything but sending and recording."""

    def __init__(
        self,
        options: ReplayOptions,
        state: DeliveryState,
        client: Sender | None,
        *,
        report: ReplayReport | None = None,
        progress: Callable[[ReplayReport, str | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options
        self.state = state
        self.client = client
        self.report = report if report is not None else ReplayReport()
        self._progress = progress
        self._clock = clock
        self._sleep = sleep
        self._names = frozenset(options.exposure_events)
        self._pacer = IdPacer(options.per_id_rate)
        self._limiter = RateLimiter(options.rate, clock=clock, sleep=sleep)
        send_events = options.send_events
        if options.rate is not None:
            send_events = max(1, min(send_events, int(options.rate)))  # about a second's worth per send
        self._send_events = send_events
        self._pending: list[_Item] = []
        self._ready: list[_Item] = []
        self._deferred: list[tuple[float, int, _Item]] = []
        self._sequence = 0

    # -- reading ---------------------------------------------------------------------------------------

    def run(self, files: Iterable[ArchiveFile]) -> ReplayReport:
        """Replay every file, then send what is still waiting; returns the report.

        Raises:
            ReplayStopped: Amplitude refused the configuration; what was delivered before is recorded.
        """
        try:
            for archive_file in files:
                self.read_file(archive_file)
            self._claim()
            self._drain()
        finally:
            self.state.commit()
        return self.report

    def read_file(self, archive_file: ArchiveFile) -> None:
        """Read one file's lines into the pipeline; a broken file is reported, never raised."""
        report = self.report
        report.files += 1
        if self._progress is not None:
            self._progress(report, archive_file.name)
        name = archive_file.name
        try:
            reader = archive_file.open()
        except OSError as exc:
            report.unreadable_files += 1
            report.problem("unreadable file", name, f"cannot open: {exc.strerror or exc}")
            return
        line = 0
        try:
            for item in iter_lines(reader.read):
                if item.__class__ is tuple:
                    line, raw = item
                    self._line(name, line, raw)
                elif isinstance(item, Cut):
                    report.truncated_files += 1
                    report.problem(
                        "truncated file",
                        f"{name}:{item.line}",
                        f"{item.reason}; the {item.line - 1} complete lines before it were read",
                    )
                elif isinstance(item, LongLine):
                    report.lines += 1
                    report.broken_lines += 1
                    report.problem(
                        "broken line", f"{name}:{item.line}", f"line of {item.size} bytes: too long"
                    )
        except OSError as exc:
            report.unreadable_files += 1
            report.problem("unreadable file", f"{name}:{line + 1}", f"reading failed: {exc.strerror or exc}")
        finally:
            reader.close()

    def _line(self, name: str, line: int, raw: bytes) -> None:
        report = self.report
        if not raw or raw.isspace():
            return
        report.lines += 1
        try:
            value = json.loads(raw)
        except UnicodeDecodeError:
            report.broken_lines += 1
            report.problem("broken line", f"{name}:{line}", "not UTF-8 text")
            return
        except (ValueError, RecursionError) as exc:
            report.broken_lines += 1
            report.problem("broken line", f"{name}:{line}", f"not JSON ({str(exc)[:120]})")
            return
        if value.__class__ is not dict:
            report.broken_lines += 1
            report.problem("broken line", f"{name}:{line}", "not a JSON object (a Segment event)")
            return
        if value.get("type") != "track" or value.get("event") not in self._names:
            report.other_events += 1
            return
        report.exposures += 1
        options = self.options
        try:
            event = to_amplitude_event(
                value, min_id_length=options.min_id_length, exposure_events=options.exposure_events
            )
        except PermanentError as exc:
            report.refused += 1
            report.problem("refused", f"{name}:{line}", f"{type(exc).__name__}: {exc}")
            return
        insert_id = event.get("insert_id")
        if insert_id is None:
            report.no_insert_id += 1
            report.problem("refused", f"{name}:{line}", "no messageId: it could not be sent exactly once")
            return
        if not options.window.contains(event.get("time")):
            report.outside_window += 1
            return
        if options.skip_user_properties_sync:
            event[SKIP_USER_PROPERTIES_SYNC] = True
        self._pending.append(_Item(event, insert_id, name, line))
        if len(self._pending) >= _CLAIM_BATCH:
            self._claim()

    # -- claiming and pacing ----------------------------------------------------------------------------

    def _claim(self) -> None:
        """Dedupe the pending events against the state; pace the fresh ones into the ready list."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        claim = self.state.claim([item.insert_id for item in pending])
        report = self.report
        report.repeated += claim.repeated
        report.delivered_before += claim.delivered_before
        report.rejected_before += claim.rejected_before
        now = self._clock()
        for index in claim.fresh:
            item = pending[index]
            event = item.event
            user = event.get("user_id") or event.get("device_id") or ""
            report.selected_event(item.flag, item.variant, user, event.get("time"))
            if self.client is None:
                continue
            ids = [value for value in (event.get("device_id"), event.get("user_id")) if value]
            due = self._pacer.schedule(ids, now)
            if due <= now:
                self._ready.append(item)
            else:
                self._defer(due, item)
        if self.client is None:
            self.state.commit()
            return
        self._send(final=False)
        while len(self._deferred) > _MAX_DEFERRED:
            self._wait_for_deferred()
            self._send(final=True)

    def _defer(self, due: float, item: _Item) -> None:
        self._sequence += 1
        heapq.heappush(self._deferred, (due, self._sequence, item))

    def _release_due(self) -> None:
        now = self._clock()
        deferred = self._deferred
        while deferred and deferred[0][0] <= now:
            self._ready.append(heapq.heappop(deferred)[2])

    def _wait_for_deferred(self) -> None:
        if self._deferred:
            wait = self._deferred[0][0] - self._clock()
            if wait > 0:
                self._sleep(wait)
        self._release_due()

    def _drain(self) -> None:
        if self.client is None:
            return
        while self._ready or self._deferred:
            self._release_due()
            if self._ready:
                self._send(final=True)
            else:
                self._wait_for_deferred()

    # -- sending ----------------------------------------------------------------------------------------

    def _send(self, *, final: bool) -> None:
        assert self.client is not None
        self._release_due()
        size = self._send_events
        while len(self._ready) >= size or (final and self._ready):
            batch, self._ready = self._ready[:size], self._ready[size:]
            self._limiter.wait(len(batch))
            result = self.client.send([item.event for item in batch], deadline=self.options.send_deadline)
            self._record(batch, result)
            if self._progress is not None:
                self._progress(self.report, None)
            self._release_due()

    def _record(self, batch: list[_Item], result: DeliveryResult) -> None:
        report = self.report
        report.requests += result.requests
        delivered: list[str] = []
        rejected: list[str] = []
        stopped: str | None = None
        for item, outcome in zip(batch, result.outcomes, strict=True):
            if outcome.status is Status.DELIVERED:
                delivered.append(item.insert_id)
                report.delivered_event(item.flag, item.variant)
            elif outcome.status is Status.REJECTED:
                rejected.append(item.insert_id)
                report.rejected += 1
                report.problem("rejected by Amplitude", item.where, outcome.reason)
            elif outcome.code == "configuration" or stopped is not None:
                stopped = stopped or outcome.reason
                report.undelivered += 1
            else:
                item.attempts += 1
                if item.attempts >= self.options.max_rounds:
                    report.undelivered += 1
                    report.problem("undelivered", item.where, f"{outcome.code}: {outcome.reason}")
                else:
                    self._defer(self._clock() + _RETRY_PAUSE * item.attempts, item)
        self.state.record(delivered, rejected)
        if stopped is not None:
            # Claimed and waiting: selected, and now left undelivered (a rerun sends them).
            report.undelivered += len(self._ready) + len(self._deferred)
            self._ready, self._deferred, self._pending = [], [], []
            raise ReplayStopped(stopped)
