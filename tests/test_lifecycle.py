"""Issue 16, lifecycle: listeners, garbage collection, int ids, and what importing does (nothing)."""

from __future__ import annotations

import gc
import json
import logging
import queue
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from typing import Any

import pytest
from segment.analytics.client import Client
from segment.analytics.consumer import Consumer

from segment_exposure import (
    Exposure,
    InMemorySegmentClient,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    capture_exposures,
)
from segment_exposure.tracking import provider as provider_module
from segment_exposure.tracking.dedupe import DedupeCache, dedupe_key
from segment_exposure.tracking.segment_client import RedactingFilter

from .conftest import WRITE_KEY, wait_until


def test_listener_gets_each_accepted_exposure_until_removed() -> None:
    provider = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    other = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    seen: list[dict[str, Any]] = []
    try:
        provider.add_listener(seen.append)
        provider.track(Exposure("flag", "on"), {"user_id": "user-00001"})
        provider.track(Exposure("flag", "on"), {"user_id": "user-00001"})  # a repeat: not accepted again
        other.track(Exposure("flag", "on"), {"user_id": "user-00002"})  # another provider: not ours
        provider.remove_listener(seen.append)
        provider.remove_listener(seen.append)  # removing twice is harmless
        provider.track(Exposure("flag", "off"), {"user_id": "user-00001"})
        assert [(m["user_id"], m["properties"]["variant"]) for m in seen] == [("user-00001", "on")]
        assert seen[0]["event"] == "$exposure"
        with pytest.raises(TypeError, match="callable"):
            provider.add_listener("not callable")  # type: ignore[arg-type]
    finally:
        provider.shutdown(1)
        other.shutdown(1)


def test_a_failing_listener_does_not_affect_tracking(caplog: pytest.LogCaptureFixture) -> None:
    client = InMemorySegmentClient()
    provider = SegmentExposureTrackingProvider(analytics=client)

    def broken(message: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    try:
        provider.add_listener(broken)
        assert provider.track(Exposure("flag", "on"), {"user_id": "user-00001"}) is True
        assert provider.flush(5)
        assert len(client.messages) == 1
        assert "listener" in caplog.text
    finally:
        provider.shutdown(1)


def test_capture_exposures_can_target_one_provider() -> None:
    provider = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    other = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    try:
        with capture_exposures(provider) as captured:
            provider.track(Exposure("flag", "on"), {"user_id": "user-00001"})
            other.track(Exposure("flag", "on"), {"user_id": "user-00002"})
        assert [m["user_id"] for m in captured] == ["user-00001"]
        assert provider.listeners == () and other.listeners == ()
    finally:
        provider.shutdown(1)
        other.shutdown(1)


def test_capture_exposures_covers_providers_created_inside_and_detaches() -> None:
    before = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    try:
        with capture_exposures() as captured:
            inside = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
            before.track(Exposure("flag", "on"), {"user_id": "user-00001"})
            inside.track(Exposure("flag", "on"), {"user_id": "user-00002"})
        assert sorted(m["user_id"] for m in captured) == ["user-00001", "user-00002"]
        assert before.listeners == () and inside.listeners == ()
        inside.shutdown(1)
    finally:
        before.shutdown(1)


_IMPORT_PROBE = """
import atexit, importlib, json, logging, os, pkgutil, signal, sys, threading

# Segment's modules, imported first: ours may not patch them
import segment.analytics.client, segment.analytics.consumer

def ours(fn):
    owner = getattr(fn, "__self__", None)
    module = getattr(fn, "__module__", None) or getattr(type(owner), "__module__", "")
    return str(module).startswith("segment_exposure")

fork_hooks, exit_hooks = [], []
real_fork, real_exit = os.register_at_fork, atexit.register
def register_at_fork(**hooks):
    fork_hooks.extend(repr(h) for h in hooks.values() if ours(h))
    return real_fork(**hooks)
def register(fn, *args, **kwargs):
    if ours(fn):
        exit_hooks.append(repr(fn))
    return real_exit(fn, *args, **kwargs)
os.register_at_fork, atexit.register = register_at_fork, register

def loggers():
    found = {"": logging.getLogger()}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            found[name] = logger
    return {n: ([id(h) for h in l.handlers], [id(f) for f in l.filters]) for n, l in found.items()}

def segment_classes():
    classes = (segment.analytics.client.Client, segment.analytics.consumer.Consumer)
    return {c.__name__: dict(vars(c)) for c in classes}

uncatchable = (signal.SIGKILL, signal.SIGSTOP)
signals = {s: signal.getsignal(s) for s in signal.valid_signals() if s not in uncatchable}
threads, handlers, classes = set(threading.enumerate()), loggers(), segment_classes()

import segment_exposure
imported = ["segment_exposure"]
for info in pkgutil.walk_packages(segment_exposure.__path__, "segment_exposure."):
    if info.name.rsplit(".", 1)[-1] != "__main__":  # __main__ runs the CLI, by design
        importlib.import_module(info.name)
        imported.append(info.name)

after = loggers()
print(json.dumps({
    "imported": imported,
    "new_threads": [t.name for t in set(threading.enumerate()) - threads],
    "fork_hooks": fork_hooks,
    "exit_hooks": exit_hooks,
    "signals_changed": [int(s) for s, h in signals.items() if signal.getsignal(s) != h],
    "loggers_changed": sorted(n for n, v in after.items() if v != handlers.get(n, ([], []))),
    "segment_patched": segment_classes() != classes,
}))
"""


@pytest.mark.slow
def test_importing_the_package_and_plugin_starts_and_patches_nothing() -> None:
    """A fresh interpreter imports every public module (the pytest plugin too) and nothing changes."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert "segment_exposure.testing.pytest_plugin" in report["imported"]
    assert "segment_exposure.integrations.django.apps" in report["imported"]
    assert {key: value for key, value in report.items() if key != "imported"} == {
        "new_threads": [],
        "fork_hooks": [],
        "exit_hooks": [],
        "signals_changed": [],
        "loggers_changed": [],
        "segment_patched": False,
    }


def test_the_first_provider_installs_the_process_hooks() -> None:
    """What import no longer does happens on first use: the write key is still redacted."""
    provider = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient("wk-secret-123"))
    try:
        segment_logger = logging.getLogger("segment")
        assert any(isinstance(f, RedactingFilter) for f in segment_logger.filters)
        record = logging.LogRecord("segment", logging.INFO, __file__, 1, "key wk-secret-123", None, None)
        assert all(f.filter(record) for f in segment_logger.filters)
        assert "wk-secret-123" not in record.getMessage()
    finally:
        provider.shutdown(1)


def test_an_int_user_id_dedupes_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The send path is the only caller of DedupeCache.decide(): every call is an exposure that left
    # the fast path. Patched before the provider exists, which binds it once.
    slow_calls: list[int] = []
    decide = DedupeCache.decide

    def counting_decide(cache: DedupeCache, key: int, variant: str | None, now: float) -> Any:
        slow_calls.append(key)
        return decide(cache, key, variant, now)

    monkeypatch.setattr(DedupeCache, "decide", counting_decide)
    client = InMemorySegmentClient()
    provider = SegmentExposureTrackingProvider(analytics=client)
    try:
        for user in ({"user_id": 42}, {"user_id": 42}, {"user_id": "42"}, {"device_id": 7}, {"device_id": 7}):
            assert provider.track(Exposure("flag", "on"), user) is True
        # repeats never left the fast path: one send-path call per identity
        assert slow_calls == [dedupe_key("42", None, "flag", None), dedupe_key(None, "7", "flag", None)]
        assert provider.flush(5)
        assert [(m["userId"], m["anonymousId"]) for m in client.messages] == [("42", None), (None, "7")]
        assert provider.stats()["deduplicated"] == 3
    finally:
        provider.shutdown(1)


def _ours_and_segments_threads() -> set[threading.Thread]:
    return {
        t for t in threading.enumerate() if t.name == "segment-exposure-worker" or isinstance(t, Consumer)
    }


@pytest.mark.slow
def test_dropped_providers_are_collected_and_leave_no_thread_or_queue(collector: SegmentCollector) -> None:
    """100 providers, half owning a Segment client and half wrapping one, each tracks and is dropped."""
    gc.collect()
    threads_before = _ours_and_segments_threads()
    queues_before = sum(1 for o in gc.get_objects() if type(o) is queue.SimpleQueue)
    providers: list[weakref.ref[SegmentExposureTrackingProvider]] = []
    owned_clients: list[weakref.ref[Any]] = []
    wrapped_clients: list[Client] = []
    for i in range(100):
        if i % 2:
            client = Client(WRITE_KEY, host=collector.url, upload_interval=0.05)
            wrapped_clients.append(client)
            provider = SegmentExposureTrackingProvider(analytics=client)
        else:
            provider = SegmentExposureTrackingProvider(
                WRITE_KEY, collector.url, client_options={"upload_interval": 0.05}
            )
            owned_clients.append(weakref.ref(provider.analytics))
        assert provider.track(Exposure("flag", "on"), {"user_id": f"user-{i:05}"})
        assert provider.flush(30)
        providers.append(weakref.ref(provider))
        del provider
    for client in wrapped_clients:
        client.shutdown()  # the user's own client: stopping it is the user's part
    del wrapped_clients, client
    gc.collect()
    assert [p for p in providers if p() is not None] == []
    assert [c for c in owned_clients if c() is not None] == []
    assert wait_until(lambda: _ours_and_segments_threads() <= threads_before, timeout=30)
    assert sum(1 for o in gc.get_objects() if type(o) is queue.SimpleQueue) <= queues_before
    assert len(collector.events()) == 100


@pytest.mark.slow
@pytest.mark.parametrize("per_invocation", [False, True])
def test_a_dropped_provider_is_freed_by_reference_counting_alone(
    collector: SegmentCollector, per_invocation: bool
) -> None:
    """No reference cycle through the provider (per-invocation delivery included): freed at once, so
    its worker thread stops when the last reference goes, not whenever the cyclic collector runs."""
    from segment_exposure import flush_each_request

    provider = SegmentExposureTrackingProvider(WRITE_KEY, collector.url)
    if per_invocation:
        assert flush_each_request(provider, True) and provider.delivers_per_invocation
    assert provider.track(Exposure("flag", "on"), {"user_id": "user-00001"})
    assert provider.flush(30)
    worker = provider.worker.thread
    ref = weakref.ref(provider)
    gc.disable()
    try:
        del provider
        assert ref() is None
    finally:
        gc.enable()
    assert wait_until(lambda: not worker.is_alive(), timeout=30)
    assert [e["userId"] for e in collector.events()] == ["user-00001"]


@pytest.mark.slow
def test_a_live_provider_is_still_flushed_at_exit_after_others_were_collected(
    collector: SegmentCollector,
) -> None:
    script = textwrap.dedent(
        f"""
        import gc
        from segment_exposure import Exposure, SegmentExposureTrackingProvider
        for i in range(5):
            SegmentExposureTrackingProvider({WRITE_KEY!r}, {collector.url!r})
        gc.collect()
        options = {{"upload_interval": 0.05}}
        kept = SegmentExposureTrackingProvider({WRITE_KEY!r}, {collector.url!r}, client_options=options)
        kept.track(Exposure("flag", "on"), {{"user_id": "user-00001"}})
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "garbage-collected" not in result.stderr
    assert [e["userId"] for e in collector.events()] == ["user-00001"]


def test_dedupe_fast_path_touch_gives_a_second_chance_before_eviction() -> None:
    cache = DedupeCache(capacity=3)
    for key in (1, 2, 3):
        assert cache.decide(key, "on", 0.0).send
    cache.touch(1)  # what track()'s fast path does on a repeat: 1 is now recently used
    assert cache.decide(4, "on", 0.0).send  # evicts 2, the least recently used, not 1
    assert sorted(cache.entries) == [1, 3, 4] and cache.evictions == 1
    assert not cache.decide(1, "on", 0.0).send
    assert cache.decide(2, "on", 0.0).send  # it was evicted: sent again


@pytest.mark.parametrize("gil", [True, False])
def test_concurrent_repeats_and_evictions_stay_consistent(gil: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast-path repeats on some threads while others fill a small cache: every count adds up, on the
    GIL's path and on the free-threaded one (which only marks a repeat's key, never moves it)."""
    monkeypatch.setattr(provider_module, "GIL_ENABLED", gil)
    client = InMemorySegmentClient()
    provider = SegmentExposureTrackingProvider(analytics=client, dedupe_capacity=50, max_queue_size=100_000)
    results: list[bool] = []

    def repeat(worker: int) -> None:
        ok = True
        for i in range(2_000):
            ok &= provider.track(Exposure("flag", "on"), {"user_id": f"user-{worker}-{i % 10}"})
        results.append(ok)

    try:
        threads = [threading.Thread(target=repeat, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [True] * 6
        assert provider.flush(30)
        stats = provider.stats()
        assert stats["tracked"] + stats["deduplicated"] == 6 * 2_000
        assert stats["delivered"] == stats["tracked"] == len(client.messages)
        assert stats["dedupe_entries"] <= 50
    finally:
        provider.shutdown(5)


@pytest.mark.slow
def test_shutdown_after_a_drained_flush_does_not_wait_out_segments_upload_interval(
    collector: SegmentCollector,
) -> None:
    """A paused consumer waits up to ``upload_interval`` for messages that will not come; with nothing
    queued or in flight, shutdown leaves it to end on its own instead of joining it."""
    interval = 4.0
    provider = SegmentExposureTrackingProvider(
        WRITE_KEY, collector.url, client_options={"upload_interval": interval}
    )
    assert provider.track(Exposure("flag", "on"), {"user_id": "user-00001"})
    assert provider.flush(30)
    consumers = list(provider.analytics.consumers)
    start = time.monotonic()
    assert provider.shutdown(30) is True
    assert time.monotonic() - start < interval / 2  # joining would take up to the whole interval
    assert wait_until(lambda: not any(c.is_alive() for c in consumers), timeout=30)
    assert provider.stats()["delivered"] == 1 and provider.stats()["dropped_total"] == 0


@pytest.mark.slow
def test_shutdown_with_exposures_still_queued_waits_for_the_consumer_within_the_deadline(
    collector: SegmentCollector,
) -> None:
    provider = SegmentExposureTrackingProvider(
        WRITE_KEY, collector.url, client_options={"upload_interval": 0.2}
    )
    collector.slow(1.0, count=1)  # the first batch is in flight when shutdown starts
    for i in range(50):
        assert provider.track(Exposure("flag", "on"), {"user_id": f"user-{i:05}"})
    assert wait_until(lambda: collector.requests >= 1, timeout=30)
    assert provider.shutdown(30) is True
    assert len(collector.events()) == 50
    assert provider.stats()["delivered"] == 50
