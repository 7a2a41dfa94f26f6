"""A local stand-in for Amplitude Experiment's servers: flag configs and remote evaluation.

``GET /sdk/v2/flags`` serves the flag configs a test sets (and may replace mid-test) to a real
``LocalEvaluationClient``; ``/sdk/v2/vardata`` evaluates those same flags for a real
``RemoteEvaluationClient`` (``POST``, the user in the body) or the Experiment JS client (``GET``, the
user in ``X-Amp-Exp-User``) with the Python SDK's own evaluation engine. Every request is recorded with its
headers, so a test can show what the SDK asked of Amplitude, e.g. that no server-side tracking was
requested. Standard library only until ``/sdk/v2/vardata`` is called (that needs amplitude-experiment).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any

from ._loopback import JSONHandler, LoopbackServer

__all__ = ["ExperimentRequest", "FlagConfigServer", "demo_flags"]

FLAGS_PATH = "/sdk/v2/flags"
VARDATA_PATH = "/sdk/v2/vardata"


def demo_flags() -> list[dict[str, Any]]:
    """The bundled example flag configs (``segment_exposure/data/demo_flags.json``)."""
    text = resources.files("segment_exposure").joinpath("data/demo_flags.json").read_text("utf-8")
    flags: list[dict[str, Any]] = json.loads(text)
    return flags


@dataclass(frozen=True, slots=True)
class ExperimentRequest:
    """One request the server answered, as it arrived."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int
    generation: int  # the flag configs' generation it was answered from

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def flag_keys(self) -> list[str] | None:
        """The flags a remote fetch asked for (``X-Amp-Exp-Flag-Keys``), or None for all."""
        return _decode_flag_keys(self.header("X-Amp-Exp-Flag-Keys"))


def _decode_flag_keys(value: str | None) -> list[str] | None:
    if not value:
        return None
    keys = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError("X-Amp-Exp-Flag-Keys is not a JSON list of strings")
    return keys


def _decode_user(headers: Mapping[str, str]) -> Any:
    value = headers.get("x-amp-exp-user")
    if not value:
        raise ValueError("a GET of /sdk/v2/vardata needs the user in X-Amp-Exp-User")
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


@dataclass
class _Fault:
    status: int
    path: str | None
    remaining: int
    close: bool
    body: bytes | None = None
    delay: float = 0.0


class FlagConfigServer(LoopbackServer):
    """Amplitude Experiment's flag and evaluation endpoints on ``127.0.0.1``.

    Point ``LocalEvaluationConfig(server_url=server.url)`` or ``RemoteEvaluationConfig(server_url=
    server.url)`` at it and use ``server.deployment_key`` as the client's key (other keys get 401):

        with FlagConfigServer(flags=demo_flags()) as server:
            config = LocalEvaluationConfig(server_url=server.url)
            client = LocalEvaluationClient(server.deployment_key, config)
            client.start()
            server.set_flags(other_flags)   # the client sees them on its next poll

    Thread-safe; the ``wait_for_*`` methods block on a condition with a deadline.
    """

    thread_name = "flag-config-server"

    def __init__(
        self,
        deployment_key: str = "server-local-test-key",
        flags: Iterable[Mapping[str, Any]] = (),
        *,
        port: int = 0,
    ) -> None:
        self.deployment_key = deployment_key
        self._cond = threading.Condition()
        self._flags: list[dict[str, Any]] = []
        self._generation = 0
        self._parsed: tuple[int, dict[str, Any]] | None = None
        self._requests: list[ExperimentRequest] = []
        self._faults: list[_Fault] = []
        self.set_flags(flags)
        self._bind(_handler_for(self), port)

    # -- configuration -------------------------------------------------------------------------------

    def set_flags(self, flags: Iterable[Mapping[str, Any]]) -> int:
        """Replace the flag configs; returns their generation (the constructor's flags are 1)."""
        copied = json.loads(json.dumps(list(flags)))  # a private copy, and proof that it is JSON
        for flag in copied:
            if not isinstance(flag, dict) or not isinstance(flag.get("key"), str):
                raise ValueError(f"a flag config must be an object with a string key, got {flag!r}")
        with self._cond:
            self._flags = copied
            self._generation += 1
            return self._generation

    @property
    def flags(self) -> list[dict[str, Any]]:
        with self._cond:
            flags: list[dict[str, Any]] = json.loads(json.dumps(self._flags))
            return flags

    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    def fail(
        self,
        status: int = 503,
        *,
        count: int = 1,
        path: str | None = None,
        close_connection: bool = True,
        body: bytes | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer ``status`` to the next ``count`` requests (to ``path`` only, when given).

        ``close_connection`` sends ``Connection: close`` with the error, so a client starts the next
        request on a fresh connection; False keeps the connection open, as a CDN in front of the
        real servers may. ``body`` replaces the JSON error with these raw bytes (a proxy's HTML page
        with a 200, say); ``delay`` answers that many seconds late (a client's read timeout).
        """
        with self._cond:
            self._faults.append(_Fault(status, path, count, close_connection, body, delay))

    # -- what was asked ------------------------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[ExperimentRequest]:
        """Requests received so far (each recorded just before its answer is sent), oldest first;
        only those to ``path`` when given."""
        with self._cond:
            return [r for r in self._requests if path is None or r.path == path]

    def clear_requests(self) -> None:
        with self._cond:
            self._requests.clear()

    def wait_for_requests(self, count: int, path: str | None = None, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` requests (to ``path``) were answered; False on timeout."""
        return self._wait(
            lambda: sum(1 for r in self._requests if path is None or r.path == path) >= count, timeout
        )

    def wait_for_generation_served(self, generation: int, timeout: float = 10.0) -> bool:
        """Wait until ``GET /sdk/v2/flags`` has answered with ``generation`` (or a later one)."""
        return self._wait(
            lambda: any(
                r.path == FLAGS_PATH and r.status == 200 and r.generation >= generation
                for r in self._requests
            ),
            timeout,
        )

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    # -- answering -----------------------------------------------------------------------------------

    def _answer(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any, int, bool]:
        """``(status, JSON payload or raw bytes, generation, close)``; ``headers`` has lower-case names."""
        with self._cond:
            generation = self._generation
            fault = next((f for f in self._faults if f.path is None or f.path == path), None)
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            flags = self._flags
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)  # the fault itself: a server that answers late
            payload = fault.body if fault.body is not None else {"error": f"injected {fault.status}"}
            return fault.status, payload, generation, fault.close
        status, payload = self._route(method, path, headers, body, flags, generation)
        return status, payload, generation, False

    def _route(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        flags: list[dict[str, Any]],
        generation: int,
    ) -> tuple[int, Any]:
        if headers.get("authorization") != f"Api-Key {self.deployment_key}":
            return 401, {"error": "Invalid deployment key"}
        if method == "GET" and path == FLAGS_PATH:
            return 200, flags
        if method in ("GET", "POST") and path == VARDATA_PATH:
            try:
                flag_keys = _decode_flag_keys(headers.get("x-amp-exp-flag-keys"))
                # The Python SDK POSTs the user; the JS client GETs with it in X-Amp-Exp-User.
                user = json.loads(body or b"{}") if method == "POST" else _decode_user(headers)
                if not isinstance(user, dict):
                    raise ValueError("the body is not a JSON object")
            except ValueError as exc:
                return 400, {"error": str(exc)}
            return 200, self._evaluate(generation, flags, user, flag_keys)
        return 404, {"error": f"no route for {method} {path}"}

    def _evaluate(
        self, generation: int, flags: list[dict[str, Any]], user: dict[str, Any], flag_keys: list[str] | None
    ) -> dict[str, Any]:
        """What Amplitude's remote evaluation answers, computed by the SDK's own engine."""
        from amplitude_experiment.evaluation.engine import EvaluationEngine
        from amplitude_experiment.evaluation.topological_sort import topological_sort
        from amplitude_experiment.evaluation.types import EvaluationFlag
        from amplitude_experiment.util.user import user_to_evaluation_context

        from ..experiment._sdk import as_sdk_user

        with self._cond:
            if self._parsed is None or self._parsed[0] != generation:
                loaded = EvaluationFlag.schema().load(flags, many=True)
                self._parsed = (generation, {flag.key: flag for flag in loaded})
            parsed = self._parsed[1]
        context = user_to_evaluation_context(as_sdk_user(user))
        results = EvaluationEngine().evaluate(context, topological_sort(parsed, flag_keys))
        wanted = set(flag_keys) if flag_keys else None
        return {
            key: {
                name: value
                for name, value in (
                    ("key", v.key),
                    ("value", v.value),
                    ("payload", v.payload),
                    ("metadata", v.metadata),
                )
                if value is not None
            }
            for key, v in results.items()
            if wanted is None or key in wanted
        }

    def _record(self, request: ExperimentRequest) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()


def _handler_for(server: FlagConfigServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONHandler):
        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, payload, generation, close = server._answer(method, path, headers, body)
            except Exception as exc:  # a bad flag config: answer as a broken server would
                status, payload, generation, close = 500, {"error": f"{type(exc).__name__}: {exc}"}, -1, True
            # Recorded before the answer goes out: a client that has its answer finds its request here.
            headers_seen = tuple(self.headers.items())
            server._record(ExperimentRequest(method, path, query, headers_seen, body, status, generation))
            if isinstance(payload, bytes):
                self.send_raw(status, payload, close=close)
            else:
                self.send_json(status, payload, close=close)

    return Handler
