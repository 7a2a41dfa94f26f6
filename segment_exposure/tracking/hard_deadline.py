"""A hard deadline on the HTTP exchanges of one block of code: their sockets are shut down when it passes.

``requests`` (urllib3, http.client) applies a timeout to each connect, send and receive, not to the
whole exchange: a server that trickles its answer a byte at a time, faster than the timeout, holds the
caller for as long as it likes. A per-invocation flush must return by its deadline (on Lambda the
response, or the invocation itself, waits for it), so within ``hard_deadline(deadline)`` every HTTP
connection the calling thread sends on is recorded, and a timer shuts its socket down at the deadline:
the blocked call then fails at once, and the caller counts what it was sending as not delivered.

The connections are found through the interpreter's audit event ``http.client.send``, which
http.client raises with the connection before each send (requests and urllib3 send through it), so
Segment's own ``request.post`` and its shared session are used as they are. The audit hook is added
once, on first use (only providers that flush per invocation use this), and stays for the life of the
process, as audit hooks do; every other audit event pays one Python call (about 0.15 µs).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from segment_exposure._signals import main_thread_signals

__all__ = ["Watch", "hard_deadline"]

log = logging.getLogger(__name__)

_EVENT = "http.client.send"
_local = threading.local()
_hook_lock = threading.Lock()
_hooked: bool | None = None  # None: not tried yet; False: the interpreter refused the hook


class Watch:
    """The sockets one block sent on, and whether its deadline cut them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[int, socket.socket] = {}
        self._done = False
        self.expired = False

    def add(self, connection: object) -> None:
        sock = getattr(connection, "sock", None)
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if self._done or id(sock) in self._sockets:
                return
            self._sockets[id(sock)] = sock
            if self.expired:  # connected after the deadline: cut at once
                _shut(sock)

    def expire(self) -> None:
        """The deadline passed: shut down every socket the block is using, and any it sends on later."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets.values():
                _shut(sock)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, not ssl.SSLSocket's (which would drop the TLS state under the
    # thread reading it): the blocked recv/send returns at once, and the TLS layer sees an EOF.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == _EVENT:
        watch: Watch | None = getattr(_local, "watch", None)
        if watch is not None and args:
            watch.add(args[0])


def _hook() -> bool:
    global _hooked
    if _hooked is None:
        with _hook_lock:
            if _hooked is None:
                try:
                    sys.addaudithook(_audit)
                    _hooked = True
                except Exception as exc:  # an embedding that forbids new audit hooks
                    _hooked = False
                    log.warning(
                        "segment-exposure: cannot add an audit hook (%s); a per-invocation flush is then "
                        "bounded per connect and read only, and a very slow Segment can hold it past its "
                        "deadline",
                        exc,
                    )
    return _hooked


@contextlib.contextmanager
def hard_deadline(deadline: float) -> Iterator[Watch]:
    """Within the block, the calling thread's HTTP connections are shut down at ``deadline``
    (``time.monotonic()``), so the block's HTTP calls fail then instead of waiting on the server.

    Connections the block merely reuses from a pool are covered too (recorded at their first send).
    """
    watch = Watch()
    if not _hook():
        yield watch
        return
    previous: Watch | None = getattr(_local, "watch", None)
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), watch.expire)
    timer.daemon = True
    timer.name = "segment-exposure-deadline"
    _local.watch = watch
    try:
        with main_thread_signals():
            timer.start()
        yield watch
    finally:
        _local.watch = previous
        watch.finish()
        timer.cancel()
