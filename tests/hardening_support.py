"""Shared helpers of the hardening tests (issue 9): in-process WSGI calls, a ``segment-exposure serve``
process that can be SIGKILLed as a whole, Segment events, log capture, and process memory."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from wsgiref.util import setup_testing_defaults

from .amplitude_cases import segment_event
from .serve_process import ServeProcess

__all__ = [
    "LogCapture",
    "ServeProcess",
    "WsgiResponse",
    "call_wsgi",
    "rss_bytes",
    "segment_event",
]

# -- WSGI, in process -------------------------------------------------------------------------------------


@dataclass
class WsgiResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call_wsgi(
    app: Any,
    body: bytes = b"",
    *,
    method: str = "POST",
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    content_length: str | None = None,
) -> WsgiResponse:
    """One request through ``app`` the way a WSGI server calls it (wsgiref's environ, no server).

    An exception escaping the app is what a WSGI server turns into a 500 answer, so it is reported as
    one (with the exception in the body) rather than raised: tests assert on statuses.
    """
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(
        {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)) if content_length is None else content_length,
        }
    )
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        else:
            environ["HTTP_" + key] = value
    started: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = dict(response_headers)

    try:
        chunks = app(environ, start_response)
        payload = b"".join(chunks)
    except Exception as exc:  # what the server would answer: 500
        return WsgiResponse(500, {}, f"{type(exc).__name__}: {exc}".encode("utf-8", "backslashreplace"))
    return WsgiResponse(started["status"], started["headers"], payload)


# -- Segment events ---------------------------------------------------------------------------------------


# -- logs -------------------------------------------------------------------------------------------------


class LogCapture(logging.Handler):
    """Every record of every logger at DEBUG, formatted (with tracebacks), while installed on the root.

    ``install()`` lowers the given loggers (and the root) to DEBUG and remembers their levels;
    ``uninstall()`` restores them.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self._lock_lines = threading.Lock()
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception as exc:  # a record that cannot be formatted is still looked at
            text = f"{record.name} UNFORMATTABLE {record.msg!r} {record.args!r} ({exc})"
        with self._lock_lines:
            self.lines.append(text)

    def install(self, names: Iterable[str] = ()) -> LogCapture:
        for name in ("", *names):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
        logging.getLogger().addHandler(self)
        return self

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)

    def text(self) -> str:
        with self._lock_lines:
            return "\n".join(self.lines)


# -- segment-exposure serve, killable ---------------------------------------------------------------------

# -- memory -----------------------------------------------------------------------------------------------


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process) from /proc, in bytes; 0 where unavailable."""
    try:
        with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Deadline:
    """A monotonic deadline: ``remaining()`` seconds left, never negative."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return max(0.0, self.start + self.seconds - time.monotonic())

    def passed(self) -> bool:
        return self.remaining() <= 0.0
