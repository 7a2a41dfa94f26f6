"""``segment-exposure serve``: the webhook under gunicorn, configured from flags and the environment.

Why gunicorn's ``asgi`` worker (an asyncio event loop per worker process) rather than threads: a slow or
stalled client then costs a coroutine and a buffer, not a worker thread, so a few hundred connections that
send headers and then nothing cannot keep Segment's signed requests waiting (see
`segment_exposure.server.asgi`). The master, the worker processes, their restarts and the signals are
gunicorn's as before.

Why gunicorn programmatically (``BaseApplication``) rather than a generated config file: the settings are
validated here, in one place, before any process starts, and the API key never passes through gunicorn's
own configuration (which it can print at debug level). Each worker builds its destination after the fork,
in `load`: an HTTP connection pool must never be shared across processes.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from segment_exposure.cli.errors import UserError
from segment_exposure.server import BatchDestination, ConfigError, ServerSettings
from segment_exposure.server.asgi import DEFAULT_DELIVERY_THREADS, create_asgi_app
from segment_exposure.server.settings import user_agent_parser_missing

if TYPE_CHECKING:
    from segment_exposure.metrics.exporter import MultiprocessExporter

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_THREADS",
    "DEFAULT_WORKERS",
    "KEEPALIVE",
    "WORKER_CLASS",
    "gunicorn_options",
    "run_serve",
]

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8080
DEFAULT_WORKERS = 2
#: ``--metrics-port`` binds here unless told otherwise: metrics are not for the public next to the webhook.
DEFAULT_METRICS_HOST = "127.0.0.1"
#: Deliveries in progress per worker (threads; each waits on Amplitude for up to the deadline, mostly idle).
#: Connections are not bounded by it: they are read by the worker's event loop.
DEFAULT_THREADS = DEFAULT_DELIVERY_THREADS
#: gunicorn's native asyncio worker: connections are coroutines, only whole requests go to a thread.
WORKER_CLASS = "asgi"
#: Seconds an idle keep-alive connection stays open after a response.
KEEPALIVE = 5
INSTALL_HINT = "pip install 'segment-exposure[server]'"

logger = logging.getLogger(__name__)


def _logging_config() -> dict[str, Any]:
    """Every log line (gunicorn's and ours) to stdout, each once: container platforms collect stdout."""
    stdout = {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "generic": {
                "format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                "datefmt": "%Y-%m-%dT%H:%M:%S%z",
            },
            "access": {"format": "%(message)s"},
        },
        "handlers": {
            "stdout": stdout,
            "access": {**stdout, "formatter": "access"},
        },
        "root": {"level": "WARNING", "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
            "segment_exposure": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }


def _setting(flag: Any, environ: Mapping[str, str], name: str) -> str | None:
    if flag is not None:
        return str(flag)
    value = environ.get(name, "").strip()
    return value or None


def _whole(text: str | None, name: str, default: int, minimum: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{name} must be a whole number, got {text[:20]!r}") from None
    if value < minimum:
        raise UserError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bind(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass  # a host name
    return f"{host}:{port}"


def gunicorn_options(settings: ServerSettings, host: str, port: int, workers: int) -> dict[str, Any]:
    """gunicorn settings for the webhook (no secrets in them)."""
    deadline = math.ceil(settings.deadline)
    return {
        "bind": [_bind(host, port)],
        "workers": workers,
        "worker_class": WORKER_CLASS,
        "keepalive": KEEPALIVE,
        # A worker is killed only if a request outlives the delivery deadline by far. The asgi worker also
        # gives up on a silent body after this long: keep it beyond our own body timeout.
        "timeout": max(30, deadline + 25, math.ceil(settings.body_timeout) + 5),
        "graceful_timeout": max(10, deadline + 5),
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        "logconfig_dict": _logging_config(),
        "proc_name": "segment-exposure",
        "preload_app": False,  # build the destination in each worker, after the fork
        # gunicorn >= 25.1 opens a control socket at one fixed path per user: two servers on one machine
        # would fight over it, and the webhook needs no runtime control.
        "control_socket_disable": True,
    }


def _settings(args: argparse.Namespace, environ: Mapping[str, str]) -> ServerSettings:
    try:
        return ServerSettings.from_environ(
            environ,
            api_key=args.api_key,
            shared_secret=args.shared_secret,
            region=args.region,
            endpoint=args.endpoint,
            min_id_length=args.min_id_length,
            deadline=getattr(args, "deadline", None),
            exposure_events=getattr(args, "exposure_event", None),
            max_body_bytes=getattr(args, "max_body_bytes", None),
            body_timeout=getattr(args, "body_timeout", None),
            source=getattr(args, "source", None),
        )
    except ConfigError as exc:
        hint = " (or pass --api-key)" if args.api_key is None and "API key" in str(exc) else ""
        raise UserError(f"{exc}{hint}") from None


def _application(
    settings: ServerSettings, options: Mapping[str, Any], metrics: MultiprocessExporter | None = None
) -> Any:
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        raise ImportError(f"serve needs gunicorn, which is not installed: {INSTALL_HINT}") from None

    class WebhookApplication(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
        """gunicorn's master with our options; `load` runs in each worker, after the fork."""

        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                    self.cfg.set(key, value)
            self.cfg.set("when_ready", _when_ready(settings, options))
            if metrics is not None:
                for hook, function in metrics.gunicorn_hooks().items():
                    self.cfg.set(hook, function)

        def load(self) -> Callable[..., Any]:
            destination: BatchDestination = settings.build_destination()
            if metrics is not None:
                destination = metrics.count(destination)
            app = create_asgi_app(
                destination,
                settings.shared_secret,
                max_body_bytes=settings.max_body_bytes,
                body_timeout=settings.body_timeout,
                delivery_threads=DEFAULT_THREADS,
            )
            # What the worker holds from here on (modules, the app, its pools) lives as long as the worker:
            # frozen out of the collector's reach, so the full collections that each large batch's parsed
            # and translated events trigger do not walk it all again (4% of the CPU per event at batch 1000).
            gc.freeze()
            logger.info("worker ready: %r", app)
            return app if metrics is None else metrics.wrap_asgi(app)

    return WebhookApplication()


def _when_ready(settings: ServerSettings, options: Mapping[str, Any]) -> Callable[[Any], None]:
    def when_ready(server: Any) -> None:
        where = "custom endpoint" if settings.endpoint else f"region {settings.region}"
        logger.info(
            "segment-exposure webhook ready: POST / (Amplitude %s, deadline %.1f s, body limit %d bytes, "
            "body timeout %.0f s, %d workers)",
            where,
            settings.deadline,
            settings.max_body_bytes,
            settings.body_timeout,
            options["workers"],
        )
        if not settings.shared_secret:
            logger.warning("SEGMENT_SHARED_SECRET is not set: requests are not authenticated")
        missing = user_agent_parser_missing()
        if missing:
            logger.warning("%s", missing)

    return when_ready


def run_serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the webhook until gunicorn stops (SIGTERM/SIGINT); returns gunicorn's exit status."""
    settings = _settings(args, environ)
    host = _setting(args.host, environ, "HOST") or DEFAULT_HOST
    port = _whole(_setting(args.port, environ, "PORT"), "PORT", DEFAULT_PORT, 0)
    if port > 65535:
        raise UserError(f"PORT must be at most 65535, got {port}")
    workers = _whole(_setting(args.workers, environ, "WORKERS"), "WORKERS", DEFAULT_WORKERS, 1)
    metrics = _metrics(args, environ)
    try:
        application = _application(settings, gunicorn_options(settings, host, port, workers), metrics)
        application.run()
    except SystemExit as exc:  # gunicorn's arbiter exits the process when it stops
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        if metrics is not None:
            metrics.stop()
    return 0


def _metrics(args: argparse.Namespace, environ: Mapping[str, str]) -> MultiprocessExporter | None:
    """``--metrics-port``/``METRICS_PORT``: the master's /metrics server, started before any worker."""
    text = _setting(getattr(args, "metrics_port", None), environ, "METRICS_PORT")
    if text is None:
        return None
    port = _whole(text, "METRICS_PORT", 0, 0)
    if port > 65535:
        raise UserError(f"METRICS_PORT must be at most 65535, got {port}")
    host = _setting(getattr(args, "metrics_host", None), environ, "METRICS_HOST") or DEFAULT_METRICS_HOST
    from segment_exposure.metrics.exporter import MultiprocessExporter

    exporter = MultiprocessExporter(host, port)
    try:
        exporter.start()
    except OSError as exc:
        raise UserError(f"cannot serve metrics on {_bind(host, port)}: {exc.strerror or exc}") from None
    return exporter
