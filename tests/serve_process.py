"""``segment-exposure serve`` as a real child process for tests: started, watched and stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ServeProcess"]

_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+) \((\d+)\)")


class ServeProcess:
    """``python -m segment_exposure serve`` in its own session (process group), output collected.

    ``kill()`` sends SIGKILL to the whole group, master and workers at once: a machine or container
    dying, not a graceful stop. ``argv`` replaces the command (e.g. a wrapper script) when given, and
    ``listen`` the arguments that bind it to a free loopback port (``("-b", "127.0.0.1:0")`` for gunicorn).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        workers: int = 1,
        argv: Sequence[str] | None = None,
        listen: Sequence[str] = ("--host", "127.0.0.1", "--port", "0"),
    ) -> None:
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_", "SEGMENT_", "WEBHOOK_"))
        }
        command = list(argv) if argv is not None else [sys.executable, "-m", "segment_exposure", "serve"]
        self.process = subprocess.Popen(
            [*command, *listen],
            env={**base, "WORKERS": str(workers), "PYTHONUNBUFFERED": "1", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            listening = self.wait_for(_LISTENING)
            self.url = f"http://127.0.0.1:{listening.group(1)}"
            self.master_pid = int(listening.group(2))
            self.wait_for(re.compile(r"worker ready"), count=workers)
        except BaseException:
            self.kill()
            raise

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._cond:
                lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(
        self, pattern: str | re.Pattern[str], count: int = 1, timeout: float = 20.0
    ) -> re.Match[str]:
        """The first stdout line matching ``pattern`` once ``count`` lines match."""
        pattern = re.compile(pattern) if isinstance(pattern, str) else pattern

        def found() -> list[re.Match[str]]:
            return [m for m in map(pattern.search, self.stdout) if m]

        with self._cond:
            self._cond.wait_for(lambda: len(found()) >= count or self.process.poll() is not None, timeout)
            matches = found()
        if len(matches) < count:
            raise AssertionError(f"no {pattern.pattern!r} in the server's output:\n{self.output()}")
        return matches[0]

    def log(self) -> str:
        """What the server printed on stdout (its log), so far."""
        with self._cond:
            return "\n".join(self.stdout)

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.stdout + self.stderr)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (gunicorn's graceful stop) and wait; SIGKILL if it does not stop in ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._join_readers()
        return code

    def kill(self) -> None:
        """SIGKILL the master and every worker (the process group this object started)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=20)
        self._join_readers()

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)
