"""The provider's ``stats()`` as Prometheus metrics, read when Prometheus scrapes (nothing on ``track()``).

Why a custom collector: ``track()`` already counts everything in lock-free counters, so copying them into
prometheus-client's own counters on every call would only add cost. A collector reads ``stats()`` at
scrape time instead. Several providers in one process are told apart by the ``provider`` label.

Under gunicorn or uWSGI each worker has its own provider, and whichever worker answers ``/metrics`` sees
only its own. With prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before the
workers start) `register` therefore mirrors ``stats()`` every ``sync_interval`` seconds into
multiprocess counters, from one background thread per worker, and `exposition_registry` sums the
workers' files at scrape time.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from ._prom import multiprocess_dir, prometheus

__all__ = [
    "DEFAULT_NAME",
    "EXPOSURE_OUTCOMES",
    "PROVIDER_METRICS",
    "ProviderCollector",
    "exposition_registry",
    "register",
    "unregister",
]

logger = logging.getLogger(__name__)

#: The ``provider`` label of a provider registered without a name.
DEFAULT_NAME = "default"
#: The ``outcome`` label values of ``segment_exposure_provider_exposures_total`` (keys of ``stats()``).
EXPOSURE_OUTCOMES = ("tracked", "deduplicated", "delivered")

EXPOSURES = "segment_exposure_provider_exposures_total"
DROPPED = "segment_exposure_provider_dropped_total"
QUEUE_SIZE = "segment_exposure_provider_queue_size"
QUEUE_CAPACITY = "segment_exposure_provider_queue_capacity"

#: Name (as exposed) -> help text of every provider metric.
PROVIDER_METRICS = {
    EXPOSURES: "Exposures the provider tracked, deduplicated or delivered.",
    DROPPED: "Exposures the provider set aside, by reason (none is lost silently).",
    QUEUE_SIZE: "Exposures waiting in the provider's queue.",
    QUEUE_CAPACITY: "How many exposures the provider's queue holds at most.",
}


def _base(name: str) -> str:
    return name.removesuffix("_total")


def _capacity(provider: Any) -> int | None:
    value = getattr(provider, "max_queue_size", None)
    return value if isinstance(value, int) else None


class _Providers:
    """Providers by label, held weakly: registering one does not keep it alive."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, weakref.ref[Any]] = {}

    def add(self, name: str, provider: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str (the provider label)")
        with self._lock:
            ref = self._refs.get(name)
            current = ref() if ref is not None else None
            if current is provider:
                return
            if current is not None and not getattr(current, "closed", False):
                raise ValueError(
                    f"a provider is already registered as {name!r} in this registry: pass name= to "
                    "tell them apart (it becomes the provider label)"
                )
            for dead in [n for n, r in self._refs.items() if r() is None]:  # collected since: tidy up
                del self._refs[dead]
            self._refs[name] = weakref.ref(provider)

    def reset_lock(self) -> None:
        """After a fork: a lock another thread held at that moment would never be released."""
        self._lock = threading.Lock()

    def remove(self, provider: Any) -> bool:
        with self._lock:
            names = [n for n, ref in self._refs.items() if ref() is provider]
            for name in names:
                del self._refs[name]
            return bool(names)

    def live(self) -> list[tuple[str, Any]]:
        with self._lock:
            pairs = [(name, ref()) for name, ref in self._refs.items()]
            for name, provider in pairs:
                if provider is None:
                    del self._refs[name]
        return [(name, p) for name, p in pairs if p is not None]


def _stats(name: str, provider: Any) -> dict[str, Any] | None:
    try:
        stats: dict[str, Any] = provider.stats()
    except Exception:
        logger.exception("segment-exposure metrics: stats() of provider %r failed; skipped", name)
        return None
    return stats


class ProviderCollector:
    """A prometheus-client collector over the providers added to it (one per registry)."""

    def __init__(self) -> None:
        self.providers = _Providers()

    def describe(self) -> Iterator[Any]:
        return self._families([])

    def collect(self) -> Iterator[Any]:
        return self._families(self.providers.live())

    def _families(self, providers: list[tuple[str, Any]]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def family(kind: Any, name: str, labels: list[str]) -> Any:
            return kind(_base(name), PROVIDER_METRICS[name], labels=labels)

        exposures = family(CounterMetricFamily, EXPOSURES, ["provider", "outcome"])
        dropped = family(CounterMetricFamily, DROPPED, ["provider", "reason"])
        queue = GaugeMetricFamily(QUEUE_SIZE, PROVIDER_METRICS[QUEUE_SIZE], labels=["provider"])
        capacity = GaugeMetricFamily(QUEUE_CAPACITY, PROVIDER_METRICS[QUEUE_CAPACITY], labels=["provider"])
        for name, provider in providers:
            stats = _stats(name, provider)
            if stats is None:
                continue
            for outcome in EXPOSURE_OUTCOMES:
                exposures.add_metric([name, outcome], stats[outcome])
            for reason, count in stats["dropped"].items():
                dropped.add_metric([name, reason], count)
            queue.add_metric([name], stats.get("pending", 0))
            size = _capacity(provider)
            if size is not None:
                capacity.add_metric([name], size)
        yield from (exposures, dropped, queue, capacity)


_collectors: weakref.WeakKeyDictionary[Any, ProviderCollector] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


def _collector(registry: Any) -> ProviderCollector:
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = _collectors[registry] = ProviderCollector()
            registry.register(collector)
        return collector


def _same(provider: Any, owner: Any) -> bool:
    return provider is not None and provider is owner


class _Mirror:
    """Multiprocess mode: copies each provider's ``stats()`` into multiprocess metrics, per process.

    Counters only grow by the difference since the last copy, so the sums Prometheus sees over all
    workers (and over workers that have exited: their files stay) are exact up to ``interval`` seconds.
    A forked child starts from zero, as the provider's own counters do after a fork.

    One per process, and it holds providers weakly: a provider the user drops is collected (what it
    counted after the last copy is not mirrored), its queue gauges fall to 0, and the thread ends once
    no registered provider is left; registering another starts it again.
    """

    def __init__(self, interval: float) -> None:
        prom = prometheus()
        self.interval = interval
        self.providers = _Providers()
        self._exposures = prom.Counter(
            _base(EXPOSURES), PROVIDER_METRICS[EXPOSURES], ["provider", "outcome"], registry=None
        )
        self._dropped = prom.Counter(
            _base(DROPPED), PROVIDER_METRICS[DROPPED], ["provider", "reason"], registry=None
        )
        self._queue = prom.Gauge(
            QUEUE_SIZE, PROVIDER_METRICS[QUEUE_SIZE], ["provider"], registry=None, multiprocess_mode="livesum"
        )
        self._capacity = prom.Gauge(
            QUEUE_CAPACITY,
            PROVIDER_METRICS[QUEUE_CAPACITY],
            ["provider"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self._last: dict[tuple[str, ...], int] = {}
        # Label -> the provider last copied under it (weakly): a new owner's counts start from zero.
        self._owners: dict[str, weakref.ref[Any]] = {}
        self._lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # Both hold this process-wide singleton, never a provider.
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.sync)

    def add(self, name: str, provider: Any) -> None:
        self.sync()  # a closed provider this one replaces: its last counts land first
        self.providers.add(name, provider)
        self.sync()
        self._start()

    def _start(self) -> None:
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="segment-exposure-metrics", daemon=True
                )
                self._thread.start()

    def _after_fork(self) -> None:
        # Only this thread survives a fork: new locks, new thread, and the child's counts start at zero.
        self._lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self._wake = threading.Event()
        self.providers.reset_lock()
        self._last.clear()
        self._owners.clear()
        self._thread = None
        if self.providers.live():
            self._start()

    def _run(self) -> None:
        while not self._wake.wait(self.interval):
            if self.sync():
                continue
            # Nothing left to copy: end, unless add() registered a provider since (it starts a thread
            # only when it finds none, and checks under the same lock).
            with self._thread_lock:
                if self._thread is threading.current_thread() and not self.providers.live():
                    self._thread = None
                    return

    def _forget(self, name: str) -> None:
        """``name``'s provider is gone (collected or unregistered) or replaced: nothing waits in it."""
        del self._owners[name]
        for labels in [key for key in self._last if key[1] == name]:
            del self._last[labels]
        self._queue.labels(name).set(0)
        self._capacity.labels(name).set(0)

    def _grow(self, counter: Any, labels: tuple[str, ...], value: int) -> None:
        last = self._last.get(labels, 0)
        # Below the last copy only if the provider's stats were reset: all of ``value`` is new.
        delta = value - last if value >= last else value
        child = counter.labels(*labels[1:])  # created at 0 on the first copy: a first increase is a rate
        if delta:
            child.inc(delta)
        self._last[labels] = value

    def sync(self) -> bool:
        """Copy every live provider's counters now (also run at exit, so a worker's last counts land).

        Returns whether any registered provider is still alive.
        """
        with self._lock:
            live = self.providers.live()
            current = dict(live)
            for name in [n for n, owner in self._owners.items() if not _same(current.get(n), owner())]:
                self._forget(name)
            for name, provider in live:
                self._owners[name] = weakref.ref(provider)
                stats = _stats(name, provider)
                if stats is None:
                    continue
                for outcome in EXPOSURE_OUTCOMES:
                    self._grow(self._exposures, ("e", name, outcome), int(stats[outcome]))
                for reason, count in stats["dropped"].items():
                    self._grow(self._dropped, ("d", name, reason), int(count))
                self._queue.labels(name).set(stats.get("pending", 0))
                size = _capacity(provider)
                if size is not None:
                    self._capacity.labels(name).set(size)
            return bool(live)


_mirror: _Mirror | None = None


def register(
    provider: Any, registry: Any = None, *, name: str = DEFAULT_NAME, sync_interval: float = 1.0
) -> None:
    """Export ``provider.stats()`` as ``segment_exposure_provider_*`` metrics labelled ``provider=name``.

    ``registry``: a ``prometheus_client.CollectorRegistry`` (default: prometheus-client's default
    registry). When ``registry`` is None and ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn, uWSGI),
    the counters are mirrored into multiprocess files every ``sync_interval`` seconds instead; serve
    them with `exposition_registry`. Registering another live provider under a name already
    taken raises ValueError.
    """
    global _mirror
    prom = prometheus()
    if registry is None and multiprocess_dir():
        if sync_interval <= 0:
            raise ValueError("sync_interval must be > 0 seconds")
        with _collectors_lock:
            if _mirror is None:
                _mirror = _Mirror(sync_interval)
        _mirror.add(name, provider)
        return
    _collector(prom.REGISTRY if registry is None else registry).providers.add(name, provider)


def unregister(provider: Any, registry: Any = None) -> bool:
    """Stop exporting ``provider``; True if it was registered there."""
    if registry is None and multiprocess_dir():
        return _mirror is not None and _mirror.providers.remove(provider)
    target = prometheus().REGISTRY if registry is None else registry
    with _collectors_lock:
        collector = _collectors.get(target)
    return collector is not None and collector.providers.remove(provider)


def exposition_registry() -> Any:
    """The registry a ``/metrics`` route should serve: in multiprocess mode, a fresh registry that sums
    every process's files; otherwise prometheus-client's default registry."""
    prom = prometheus()
    path = multiprocess_dir()
    if path is None:
        return prom.REGISTRY
    from prometheus_client import multiprocess

    registry = prom.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry
