"""Hostile clients against ``segment-exposure serve``: stalled bodies, slow readers, idle keep-alives.

``python -m benchmarks.hostile`` starts ``serve`` (the code on ``PYTHONPATH``) against an emulator in this
process, measures the latency of signed batches alone, then with hundreds of stalled connections open, and
how long the server takes to close them. tests/test_serve_hostile.py holds the same scenario to its goals.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

__all__ = [
    "Hostiles",
    "Serve",
    "signed_batch",
    "stalled_body",
    "timed_batches",
]

API_KEY = "amp-hostile-key-9e8d7c6b5a"
SECRET = "whsec-hostile-1f2e3d4c5b"
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def signed_batch(n: int, tag: str, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """A signed webhook body of ``n`` Segment ``$exposure`` events and its headers."""
    from segment_exposure.server import sign

    events = [
        {
            "type": "track",
            "event": "$exposure",
            "userId": f"user-{tag}-{i:06d}",
            "anonymousId": f"anon-{tag}-{i:06d}",
            "messageId": f"{tag}-{i:06d}",
            "timestamp": "2026-11-24T10:00:00.123Z",
            "properties": {"flag_key": "checkout", "variant": "treatment", "experiment_key": "exp-1"},
            "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
        }
        for i in range(n)
    ]
    body = json.dumps(events).encode()
    return body, {"Content-Type": "application/json", "X-Signature": sign(body, secret)}


def stalled_body(host: str, port: int) -> socket.socket:
    """A connection that sends complete headers and one byte of a 1000-byte body, then nothing."""
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n["
    )
    return sock


def slow_reader(host: str, port: int, body: bytes, headers: Mapping[str, str]) -> socket.socket:
    """A connection that sends a whole signed request and never reads the answer (tiny receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.settimeout(10)
    sock.connect((host, port))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(
        f"POST / HTTP/1.1\r\nHost: {host}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    return sock


def idle_keepalive(host: str, port: int) -> socket.socket:
    """A connection that asks for ``/healthz`` once, reads the answer and then stays open, silent."""
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return sock


@dataclass
class Hostiles:
    """Open hostile sockets and when each was opened; :meth:`closed_after` watches the server close them."""

    sockets: list[socket.socket] = field(default_factory=list)
    opened: list[float] = field(default_factory=list)

    def add(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sockets.append(sock)
        self.opened.append(time.monotonic())

    def closed_after(self, bound: float) -> tuple[list[float], list[bytes]]:
        """Seconds from opening to the server's close (EOF or reset) for each socket, waiting up to
        ``bound`` seconds in all, reading (and so draining) what arrives; the first bytes each received."""
        closed: dict[int, float] = {}
        first: dict[int, bytes] = {}
        end = time.monotonic() + bound
        while len(closed) < len(self.sockets) and time.monotonic() < end:
            open_ = [s for i, s in enumerate(self.sockets) if i not in closed]
            ready, _, _ = select.select(open_, [], [], min(0.2, max(0.0, end - time.monotonic())))
            for sock in ready:
                index = self.sockets.index(sock)
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                except BlockingIOError:
                    continue
                if data:
                    first.setdefault(index, data[:1024])
                    continue
                closed[index] = time.monotonic() - self.opened[index]
        return [closed.get(i, float("inf")) for i in range(len(self.sockets))], [
            first.get(i, b"") for i in range(len(self.sockets))
        ]

    def close(self) -> None:
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass
        self.sockets.clear()
        self.opened.clear()


def timed_batches(url: str, count: int, size: int, tag: str, timeout: float = 120.0) -> list[float]:
    """Seconds each of ``count`` signed batches of ``size`` events took (one new connection each); every
    answer must be 200."""
    latencies: list[float] = []
    for n in range(count):
        body, headers = signed_batch(size, f"{tag}{n}")
        started = time.monotonic()
        response = requests.post(url + "/", data=body, headers=headers, timeout=timeout)
        latencies.append(time.monotonic() - started)
        if response.status_code != 200:
            raise AssertionError(f"batch {n}: HTTP {response.status_code}: {response.text[:300]}")
    return latencies


class Serve:
    """``python -m segment_exposure serve`` on 127.0.0.1 (port 0) against ``endpoint``, in its own session."""

    def __init__(
        self,
        endpoint: str,
        *,
        workers: int = 2,
        env: Mapping[str, str] | None = None,
        api_key: str = API_KEY,
        secret: str = SECRET,
    ) -> None:
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_", "SEGMENT_", "WEBHOOK_"))
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "segment_exposure", "serve", "--host", "127.0.0.1", "--port", "0"],
            env={
                **base,
                "AMPLITUDE_API_KEY": api_key,
                "SEGMENT_SHARED_SECRET": secret,
                "AMPLITUDE_ENDPOINT": endpoint,
                "WORKERS": str(workers),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    sum("worker ready" in line for line in self.lines) >= workers
                    or self.process.poll() is not None
                ),
                60,
            )
            match = next((m for m in map(_LISTENING.search, self.lines) if m), None)
            ready = sum("worker ready" in line for line in self.lines) >= workers
        if match is None or not ready:
            self.stop()
            raise RuntimeError("serve did not start:\n" + "\n".join(self.lines[-30:]))
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def worker_pids(self) -> list[int]:
        pids = re.findall(r"Booting worker with pid: (\d+)", "\n".join(self.lines))
        return [int(p) for p in pids]

    def stop(self) -> int:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=30)
        finally:
            self._reader.join(timeout=5)


@contextmanager
def serving(workers: int = 2, env: Mapping[str, str] | None = None) -> Iterator[tuple[Serve, Any]]:
    """An emulator (no throttling) in this process and ``serve`` in front of it."""
    from segment_exposure.testing import AmplitudeEmulator

    with AmplitudeEmulator(api_keys={API_KEY}, eps_threshold=1e9) as amplitude:
        server = Serve(amplitude.http_api_url, workers=workers, env=env)
        try:
            yield server, amplitude
        finally:
            server.stop()


def measure(stalled: int, batches: int, size: int, body_timeout: float) -> dict[str, Any]:
    """Latency of signed batches alone and with ``stalled`` stalled bodies open; how soon they close."""
    with serving(env={"WEBHOOK_BODY_TIMEOUT": str(body_timeout)}) as (server, _):
        alone = timed_batches(server.url, batches, size, "alone")
        hostiles = Hostiles()
        try:
            for _ in range(stalled):
                hostiles.add(stalled_body("127.0.0.1", server.port))
            during = timed_batches(server.url, batches, size, "during")
            closes, first = hostiles.closed_after(body_timeout + 60)
        finally:
            hostiles.close()
    finite = [c for c in closes if c != float("inf")]
    return {
        "stalled": stalled,
        "alone_median_s": statistics.median(alone),
        "during_max_s": max(during),
        "during_median_s": statistics.median(during),
        "closed": len(finite),
        "close_max_s": max(finite) if finite else None,
        "answered_408": sum(f.startswith(b"HTTP/1.1 408") for f in first),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__)
    parser.add_argument("--stalled", type=int, default=200)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--body-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.stalled, args.batches, args.size, args.body_timeout), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
