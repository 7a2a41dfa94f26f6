"""Notices when a ``LocalEvaluationClient``'s flag configs change, or first load, for provider events.

amplitude-experiment has no callback for either; its poller replaces the configs in place. A small
daemon thread compares a cheap signature of them (each flag's ``flagVersion``, which Amplitude bumps on
every change) every ``interval`` seconds, and starts the client again while its first fetch has not
succeeded (the SDK's own poller is not running then).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from segment_exposure.experiment._sdk import flag_configs

__all__ = ["ConfigWatch", "config_signature"]

log = logging.getLogger(__name__)

Signature = dict[str, Any]


def config_signature(client: Any) -> Signature | None:
    """flag key -> its ``flagVersion`` (the whole config when it has none), or None when unreadable."""
    configs = flag_configs(client)
    if configs is None:
        return None
    signature: Signature = {}
    for key, config in configs.items():
        metadata = getattr(config, "metadata", None)
        version = metadata.get("flagVersion") if isinstance(metadata, dict) else None
        signature[key] = ("version", version) if version is not None else config
    return signature


def changed_flags(before: Signature, after: Signature) -> list[str]:
    """Keys added, removed or changed between two signatures, sorted."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


class ConfigWatch:
    """Calls ``on_ready()`` once the client has started, and ``on_changed(keys)`` when its configs change.

    Args:
        client: a ``LocalEvaluationClient``.
        interval: seconds between looks.
        on_ready: called (on the watch thread) when a client that failed to start has started.
        on_changed: called (on the watch thread) with the keys of the flags that changed.
    """

    def __init__(
        self,
        client: Any,
        interval: float,
        on_ready: Callable[[], None],
        on_changed: Callable[[list[str]], None],
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0 seconds")
        self.client = client
        self.interval = interval
        self._on_ready = on_ready
        self._on_changed = on_changed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._signature: Signature | None = None
        self._started = False

    def start(self, *, client_started: bool) -> None:
        """Begin watching; ``client_started`` False makes the watch retry ``client.start()`` first."""
        self._started = client_started
        if client_started:
            self._signature = config_signature(self.client)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="segment-exposure-openfeature-watch", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and wait up to ``timeout`` seconds for the thread."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._look()
            except Exception:
                log.exception("segment-exposure: watching the flag configs failed; watching on")

    def _look(self) -> None:
        if not self._started:
            try:
                self.client.start()
            except Exception as exc:
                log.debug("segment-exposure: the Experiment client did not start yet: %s", exc)
                return
            self._started = True
            self._signature = config_signature(self.client)
            if not self._stop.is_set():
                self._on_ready()
            return
        signature = config_signature(self.client)
        if signature is None or self._signature is None:
            return
        changed = changed_flags(self._signature, signature)
        self._signature = signature
        if changed and not self._stop.is_set():
            self._on_changed(changed)
