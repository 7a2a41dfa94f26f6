"""Background threads that leave process signals to the main thread."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["main_thread_signals"]


#: Signals a process is stopped or interrupted with. Python runs their handlers only on the main thread,
#: and only once the kernel delivers them to it: a signal that lands on a background thread leaves the
#: main thread blocked in its syscall (an accept(), a read()) with the handler never run.
_PROCESS_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT") if hasattr(signal, name)
)


@contextlib.contextmanager
def main_thread_signals() -> Iterator[None]:
    """Threads started inside the block never receive process signals: the main thread does.

    A new thread inherits its creator's signal mask, so the mask is set around the start and restored.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _PROCESS_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
