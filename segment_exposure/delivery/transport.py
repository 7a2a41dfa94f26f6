"""Posting request bodies to Amplitude, and reading each answer as definitive or worth retrying.

`Transport` owns what outlives one send: the HTTP poster and its connection pool, the pool of
``max_in_flight`` threads, the client's closed flag, and the ``observer`` of answer codes. A send
reaches it only through `SendLink <segment_exposure.delivery.send_link.SendLink>`, so the send loop never
touches the client.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from segment_exposure.delivery._http import HttpFailure, HttpTimeout, Poster
from segment_exposure.delivery.outcomes import Reply, TransientFailure, retry_after_seconds

__all__ = ["Redactor", "Transport"]

logger = logging.getLogger(__name__)


class Redactor:
    """Hides the API key in text that may reach a log, a reason or an exception message."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "Redactor('***')"

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by ``***``."""
        secret = self._secret
        return text.replace(secret, "***") if secret in text else text


class Transport:
    """Posts bodies to ``endpoint`` with ``poster``, on the calling thread or on a pool of threads.

    Args:
        poster: Makes the HTTP request (our urllib3 pool, or the caller's ``requests.Session``).
        endpoint: The URL every body goes to.
        headers: Sent with every request (the content type and encoding, the user agent).
        timeout: The per-request (connect, read) timeout, cut to what is left of a send's deadline.
        max_in_flight: Threads of the pool made on the first `submit`.
        redactor: Hides the API key in the reasons of failures.
    """

    def __init__(
        self,
        poster: Poster,
        endpoint: str,
        *,
        headers: dict[str, str],
        timeout: tuple[float, float],
        max_in_flight: int,
        redactor: Redactor,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        #: Called with the code of each request's answer (see ``AmplitudeClient.observer``).
        self.observer: Callable[[str], None] | None = None
        self._poster = poster
        self._headers = headers
        self._max_in_flight = max_in_flight
        self._redactor = redactor
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(closed={self.closed!r})"

    @property
    def closed(self) -> bool:
        """Whether `close` was called: sends stop, and their events come back as retry later."""
        return self._closed.is_set()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the transport is closed meanwhile."""
        self._closed.wait(seconds)

    def close(self) -> None:
        """Wake sends that wait, stop the pool taking requests, and close the poster."""
        self._closed.set()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        self._poster.close()

    def submit(self, body: bytes, end: float) -> Future[Reply]:
        """`post` ``body`` on the pool of ``max_in_flight`` threads (made on first use).

        Raises:
            RuntimeError: The transport is closed.
        """
        with self._pool_lock:
            if self._pool is None:
                if self._closed.is_set():
                    raise RuntimeError("the client is closed")
                self._pool = ThreadPoolExecutor(self._max_in_flight, thread_name_prefix="amplitude-post")
            return self._pool.submit(self.post, body, end)

    def post(self, body: bytes, end: float) -> Reply:
        """One POST, before ``end`` (a ``time.monotonic()`` value).

        Returns:
            A definitive JSON answer (2xx or 4xx).

        Raises:
            TransientFailure: Anything worth retrying: 408, 5xx, a timeout, a network error, a 2xx whose
                body is not a JSON object, or closed or out of time before sending.
        """
        if self._closed.is_set():
            raise TransientFailure("closed", "the client was closed before the request was sent")
        remaining = end - time.monotonic()
        if remaining <= 0.001:
            raise TransientFailure("deadline", "the deadline passed before the request could be sent")
        timeout = (min(self.timeout[0], remaining), min(self.timeout[1], remaining))
        try:
            response = self._poster.post(self.endpoint, body, self._headers, timeout)
        except HttpTimeout as exc:
            self._observe("timeout")
            code = "deadline" if time.monotonic() >= end - 0.001 else "timeout"
            raise TransientFailure(
                code, f"no answer from Amplitude within {timeout[1]:.3g} s ({exc})"
            ) from None
        except HttpFailure as exc:
            self._observe("reset")
            reason = f"network error talking to Amplitude: {self._redactor.redact(str(exc))[:300]}"
            raise TransientFailure("network", reason) from None
        status = response.status
        self._observe(str(status))
        content = response.content
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = None
        if status >= 500 or status == 408:
            code = "unavailable" if status == 503 else "server_error"
            detail = parsed.get("error", "") if isinstance(parsed, dict) else "non-JSON body"
            wait_for = retry_after_seconds(response.retry_after) if status == 503 else None
            raise TransientFailure(
                code,
                f"Amplitude answered HTTP {status} ({self._redactor.redact(str(detail))[:200]})",
                wait_for,
            )
        if not isinstance(parsed, dict):
            if 400 <= status < 500:
                # A proxy's HTML page still says what happened; act on the status.
                parsed = {"code": status, "error": f"HTTP {status} with a non-JSON body"}
            else:
                raise TransientFailure(
                    "bad_response",
                    f"Amplitude answered HTTP {status} with a body that is not a JSON object; it may or may "
                    "not have ingested the events",
                )
        return Reply(status, parsed, retry_after_seconds(response.retry_after))

    def _observe(self, code: str) -> None:
        observer = self.observer
        if observer is not None:
            try:
                observer(code)
            except Exception:
                logger.exception("the Amplitude client's observer failed")
