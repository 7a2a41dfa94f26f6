"""MkDocs hook: the tables and pages the code already knows, generated at build time so they cannot drift.

A page asks for one with a marker line, ``<!-- generated: NAME -->``; ``on_page_markdown`` replaces it with
what ``GENERATORS[NAME]`` returns. What only a person can say (what an option means) is written here, next
to the generator, and checked against the code: a setting, option, parameter or reason that appears in the
code without a description here, or is described here but gone from the code, fails the build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import Any

__all__ = ["GENERATORS", "MARKER", "DocsGenerationError", "expand", "on_page_markdown"]

#: ``<!-- generated: cli -->`` on a line of its own.
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


class DocsGenerationError(RuntimeError):
    """The code and the descriptions kept here disagree, or a page asks for something unknown."""


def _same_names(what: str, in_code: Iterable[str], described: Iterable[str]) -> None:
    code, here = list(in_code), set(described)
    missing = [n for n in code if n not in here]
    stale = sorted(here - set(code))
    if missing or stale:
        raise DocsGenerationError(
            f"docs/_hooks/generated.py, {what}: no description for {missing}; described but gone: {stale}"
        )


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(value: object) -> str:
    return f"`{value}`"


# -- the command line ------------------------------------------------------------------------------------


def _help(argv: list[str]) -> str:
    """What ``segment-exposure ARGV --help`` prints, at a fixed width."""
    from segment_exposure.cli import build_parser

    out = io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            build_parser().parse_args([*argv, "--help"])
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return out.getvalue().rstrip()


def cli() -> str:
    from segment_exposure.cli import COMMANDS

    parts = ["```text\n" + _help([]) + "\n```"]
    for name in COMMANDS:
        parts.append(f"### `segment-exposure {name}`\n\n```text\n{_help([name])}\n```")
    return "\n\n".join(parts)


# -- the served destination ---------------------------------------------------------------------------------

SERVER_SETTINGS = {
    "api_key": "Amplitude project API key. Required.",
    "shared_secret": "Segment's webhook shared secret: when set, every request's `X-Signature` is verified.",
    "region": "`US` or `EU`: Amplitude's data centre.",
    "endpoint": "A full ingestion URL (e.g. a proxy, or a local emulator); overrides `region`.",
    "min_id_length": "Amplitude's minimum length for user and device ids (Amplitude's default: 5).",
    "exposure_events": "Event names taken as exposures (comma-separated in the environment).",
    "source": (
        "Whose Amplitude mapping the events get: `auto` (RudderStack's for events RudderStack delivered, "
        "else Segment's), `segment` or `rudderstack`."
    ),
    "deadline": "Seconds one delivery to Amplitude may take (inside Segment's own timeout).",
    "max_body_bytes": "The largest request body accepted (413 above it).",
    "body_timeout": "Seconds a request body may take to arrive once its headers have (`serve`; then 408).",
}

SERVE_ONLY = {
    "HOST": ("DEFAULT_HOST", "--host", "Address `serve` binds."),
    "PORT": ("DEFAULT_PORT", "--port", "Port `serve` listens on."),
    "WORKERS": ("DEFAULT_WORKERS", "--workers", "gunicorn worker processes."),
    "METRICS_PORT": (None, "--metrics-port", "Serve Prometheus `/metrics` on this port (off when unset)."),
    "METRICS_HOST": ("DEFAULT_METRICS_HOST", "--metrics-host", "Address of the `/metrics` server."),
}


def server_settings() -> str:
    from segment_exposure.cli import serve as serve_cmd
    from segment_exposure.metrics import emf
    from segment_exposure.server import ENVIRONMENT, ServerSettings

    _same_names("SERVER_SETTINGS", ENVIRONMENT, SERVER_SETTINGS)
    defaults = {
        f.name: f.default for f in dataclasses.fields(ServerSettings) if f.default is not dataclasses.MISSING
    }
    serve_help = _help(["serve"])
    rows: list[list[str]] = []
    for name, variable in ENVIRONMENT.items():
        flag = "--" + name.replace("_", "-")
        if name == "exposure_events":
            flag = "--exposure-event"
        default = defaults.get(name)
        if isinstance(default, tuple):
            default = ",".join(default)
        rows.append(
            [
                _code(variable),
                _code(flag) if flag in serve_help else "",
                "" if default is None else _code(default),
                SERVER_SETTINGS[name],
            ]
        )
    for variable, (constant, flag, meaning) in SERVE_ONLY.items():
        if flag not in serve_help:
            raise DocsGenerationError(f"segment-exposure serve has no {flag} any more")
        default = getattr(serve_cmd, constant) if constant else None
        rows.append([_code(variable), _code(flag), "" if default is None else _code(default), meaning])
    rows.append(
        [
            _code(emf.EMF_ENV),
            "",
            "",
            "`1` makes the Lambda handler log CloudWatch embedded-metric-format lines (Lambda only).",
        ]
    )
    rows.append([_code(emf.NAMESPACE_ENV), "", _code(emf.DEFAULT_NAMESPACE), "Their CloudWatch namespace."])
    return _table(["environment variable", "`serve` flag", "default", "meaning"], rows)


# -- the framework integrations -------------------------------------------------------------------------

INTEGRATION_OPTIONS = {
    "WRITE_KEY": "Your Segment source's write key: the integration builds a provider for it.",
    "HOST": "Segment's API host, for a provider the integration builds.",
    "PROVIDER": "A provider you built yourself (exactly one of WRITE_KEY, PROVIDER, ANALYTICS).",
    "ANALYTICS": "A Segment client of your own to send through.",
    "IDENTIFY": "Your own resolver: request (ASGI: `HTTPConnection`, sync or async) -> Experiment user.",
    "DEDUPE_TTL": "The dedupe window, in seconds.",
    "DEDUPE_CAPACITY": "Identities x flags remembered for dedupe.",
    "MAX_QUEUE_SIZE": "Exposures waiting for the background thread; more are dropped and counted.",
    "FLUSH_TIMEOUT": "Seconds the exit (or per-request) flush may take.",
    "INCLUDE_METADATA": "Also send `Exposure.metadata` as `properties.metadata`.",
    "INTEGRATIONS": 'Segment `integrations` for every exposure, e.g. `{"Actions Amplitude": False}`.',
    "CLIENT_OPTIONS": "Extra keyword arguments for the Segment client the provider builds.",
    "SDK": "Whose client the provider builds and sends through: Segment's or RudderStack's "
    "(then `HOST` is your data plane URL; needs the `rudderstack` extra).",
    "DEVICE_ID_COOKIE": "The integration's own device-id cookie (`amp_device_id`).",
    "SET_DEVICE_ID_COOKIE": "Set that cookie on requests that carry no device id at all (off by default).",
    "USER_ID_ATTRIBUTE": "The attribute of the framework's logged-in user that is the user id.",
    "METRICS": "Register the provider with Prometheus (`True`, or a `provider` label); needs `[metrics]`.",
    "IDENTITY_SOURCES": "Where ids come from, in order (see [Identity](identity.md)).",
    "AMPLITUDE_API_KEY": "Your Amplitude API key, to read Amplitude's browser cookies.",
    "SEND_USER_AGENT": "Send the request's `User-Agent` as `context.userAgent`.",
    "SEND_IP": "Send the client address as `context.ip`.",
    "SEND_LOCALE": "Send the preferred `Accept-Language` tag as `context.locale`.",
    "FLUSH_EACH_REQUEST": "Deliver each request's exposures before its response (default: on in serverless).",
}

ASGI_ONLY = {
    "app": "The ASGI app it wraps (given by `add_middleware`).",
    "experiment": "An `ExposureTrackingClient`, handed to endpoints by the `ExperimentClient` dependency.",
}


def integration_options() -> str:
    from segment_exposure.integrations._common import OPTION_VALUES, OPTIONS, PROVIDER_OPTIONS
    from segment_exposure.integrations.asgi import SegmentExposureMiddleware

    _same_names("INTEGRATION_OPTIONS", sorted(OPTIONS), INTEGRATION_OPTIONS)
    asgi = inspect.signature(SegmentExposureMiddleware.__init__).parameters
    asgi_names = [n for n in asgi if n != "self"]
    _same_names(
        "ASGI_ONLY",
        [n for n in asgi_names if n.upper() not in OPTIONS],
        ASGI_ONLY,
    )
    rows = []
    for name in sorted(OPTIONS, key=list(INTEGRATION_OPTIONS).index):
        keyword = name.lower()
        provider = PROVIDER_OPTIONS.get(name)
        meaning = INTEGRATION_OPTIONS[name]
        if provider:
            meaning += f" Passed on as `{provider}=`."
        rows.append(
            [
                _code(f"SEGMENT_EXPOSURE_{name}"),
                _code(f'"{name}"'),
                _code(keyword + "=") if keyword in asgi else "",
                OPTION_VALUES[name],
                meaning,
            ]
        )
    for name, meaning in ASGI_ONLY.items():
        if name != "app":
            rows.append(["", "", _code(name + "="), "", meaning])
    return _table(
        ["Flask config key", "Django `SEGMENT_EXPOSURE` key", "ASGI keyword", "value", "meaning"], rows
    )


# -- the provider -----------------------------------------------------------------------------------------

PROVIDER_PARAMETERS = {
    "write_key": "A new Segment client for this write key.",
    "host": "Segment's API host for that client.",
    "analytics": "An existing `segment.analytics.Client` to send through instead.",
    "dedupe_capacity": "Identity x flag entries kept for dedupe; the least recently used go first.",
    "dedupe_ttl": "The dedupe window in seconds; windows are aligned to the epoch (UTC days by default).",
    "max_queue_size": "Exposures waiting for the background thread; more are dropped and counted.",
    "flush_timeout": "How long the exit hook (and a per-invocation flush) waits for delivery, in seconds.",
    "include_metadata": "Also send `Exposure.metadata` as `properties.metadata`.",
    "integrations": 'Segment `integrations` for every exposure, e.g. `{"Actions Amplitude": False}`.',
    "client_options": "Extra keyword arguments for the owned `segment.analytics.Client`.",
    "sdk": (
        "Whose client: `segment` (segment-analytics-python) or `rudderstack` (rudder-sdk-python, `host` "
        "being your data plane URL; see [RudderStack](rudderstack.md)). Default: recognised from "
        "`analytics`, else `segment`."
    ),
    "flush_on_sigterm": (
        "On SIGTERM, flush within `flush_timeout`, then let SIGTERM do what it did before (Python's "
        "default SIGTERM skips exit hooks; see [Deployment servers](operating.md#deployment-servers))."
    ),
}


def provider_options() -> str:
    from segment_exposure.tracking import SegmentExposureTrackingProvider

    parameters = inspect.signature(SegmentExposureTrackingProvider.__init__).parameters
    names = [n for n in parameters if n != "self"]
    _same_names("PROVIDER_PARAMETERS", names, PROVIDER_PARAMETERS)
    rows = []
    for name in names:
        default = parameters[name].default
        shown = "" if default in (None, inspect.Parameter.empty) else _code(f"{default!r}")
        rows.append([_code(name), shown, PROVIDER_PARAMETERS[name]])
    return _table(["parameter", "default", "meaning"], rows)


DROP_REASONS = {
    "no_identity": "Neither a non-blank `user_id` nor `device_id` (and no user bound to the request).",
    "invalid": "Not an `Exposure`, or fields of the wrong type.",
    "too_large": "Over Segment's 32 KB message limit.",
    "queue_full": "The provider's queue is full (Segment down for long, or a burst beyond `max_queue_size`).",
    "delivery_failed": "Segment's client gave up on a batch (its `on_error`).",
    "shutdown": "Still queued when the shutdown or exit deadline passed, or tracked after `shutdown()`.",
    "flush_deadline": (
        "Not delivered within the deadline of a per-invocation or per-request flush; it may still have "
        "reached Segment (see [Serverless](serverless.md))."
    ),
    "threads_disabled": (
        "The server runs Python without threads (uWSGI before 2.0.27 without `--enable-threads`)."
    ),
    "error": "An unexpected exception, logged with its traceback.",
}


def drop_reasons() -> str:
    from segment_exposure.tracking import DROP_REASONS as reasons

    _same_names("DROP_REASONS", reasons, DROP_REASONS)
    return _table(["reason", "when"], [[_code(r), DROP_REASONS[r]] for r in reasons])


# -- the differences on purpose ---------------------------------------------------------------------------


def _deviations() -> dict[str, Any]:
    text = resources.files("segment_exposure").joinpath("data/deviations.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def segment_deviations() -> str:
    rows = []
    for row in _deviations()["segment_destination"]:
        name = row["name"] + (" (Python translator only)" if row.get("translator_only") else "")
        whole = row.get("whole_event")
        fields = f"whole event ({whole})" if whole else ", ".join(_code(f) for f in row["fields"])
        rows.append([name, fields, row["why"]])
    return _table(["difference", "fields", "why"], rows)


def js_client_deviations() -> str:
    rows = [[_code(r["name"]), r["ours"], r["why"]] for r in _deviations()["js_client"]]
    return _table(["name", "this package", "why"], rows)


def rudderstack_differences() -> str:
    from segment_exposure.delivery.sources import differences_table

    return differences_table()


GENERATORS: Mapping[str, Callable[[], str]] = {
    "cli": cli,
    "server-settings": server_settings,
    "integration-options": integration_options,
    "provider-options": provider_options,
    "drop-reasons": drop_reasons,
    "segment-deviations": segment_deviations,
    "js-client-deviations": js_client_deviations,
    "rudderstack-differences": rudderstack_differences,
}


def expand(markdown: str) -> str:
    """``markdown`` with every marker replaced by what its generator makes."""

    def replace(match: re.Match[str]) -> str:
        generator = GENERATORS.get(match.group(1))
        if generator is None:
            known = sorted(GENERATORS)
            raise DocsGenerationError(f"unknown generated block {match.group(1)!r}; known: {known}")
        return generator()

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """MkDocs calls this for every page."""
    return expand(markdown)
