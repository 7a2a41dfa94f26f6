"""A real uvicorn server on a loopback port, in a thread of the test process (real HTTP, real lifespan)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn


class UvicornThread:
    """``with UvicornThread(app) as server:`` serves ``app`` on ``server.url`` until the block ends.

    Leaving the block runs the app's lifespan shutdown, as a SIGTERM would, and waits for it.
    """

    def __init__(self, app: Any, **config: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        options = {"lifespan": "on", "log_level": "warning", "access_log": False, **config}
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, name="uvicorn", daemon=True
        )
        self.shutdown_seconds: float | None = None

    def __enter__(self) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30) -> None:
        if self.shutdown_seconds is not None:
            return
        started = time.monotonic()
        self.server.should_exit = True
        self._thread.join(timeout)
        self.shutdown_seconds = time.monotonic() - started
        self._socket.close()
        if self._thread.is_alive():
            raise RuntimeError("uvicorn did not stop")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
