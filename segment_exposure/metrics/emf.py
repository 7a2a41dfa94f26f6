"""The webhook's counts for one Lambda invocation as a CloudWatch embedded metric format (EMF) log line.

Why EMF: a Lambda has no long-lived process for Prometheus to scrape, but CloudWatch Logs turns a JSON log
line with an ``_aws`` member into metrics, with no agent, no API call and no extra latency. One line per
invocation carries every count, zeros included (so CloudWatch's sums and averages are right).
Opt-in: ``SEGMENT_EXPOSURE_EMF=1``; ``SEGMENT_EXPOSURE_EMF_NAMESPACE`` names the namespace.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from .webhook import InvocationCounts

__all__ = ["DEFAULT_NAMESPACE", "EMF_ENV", "NAMESPACE_ENV", "SERVICE", "emf_document", "emit", "enabled"]

#: Set to 1 (or true, yes, on) to log one EMF line per Lambda invocation.
EMF_ENV = "SEGMENT_EXPOSURE_EMF"
#: The CloudWatch namespace of the metrics (default `DEFAULT_NAMESPACE`).
NAMESPACE_ENV = "SEGMENT_EXPOSURE_EMF_NAMESPACE"
DEFAULT_NAMESPACE = "SegmentExposure"
#: The ``Service`` dimension's value.
SERVICE = "segment-exposure"

#: EMF metric name -> event outcome (``segment_exposure_destination_events_total{outcome}``).
_EVENT_METRICS = {
    "EventsDelivered": "delivered",
    "EventsRejected": "rejected",
    "EventsRetry": "retry",
    "EventsNotExposure": "not_exposure",
}


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether ``SEGMENT_EXPOSURE_EMF`` turns the EMF line on."""
    return environ.get(EMF_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _amplitude(codes: Mapping[str, int]) -> dict[str, int]:
    def count(match: Any) -> int:
        return sum(n for code, n in codes.items() if match(code))

    return {
        "AmplitudeRequests": sum(codes.values()),
        "Amplitude2xx": count(lambda c: c.startswith("2")),
        "Amplitude4xx": count(lambda c: c.startswith("4") and c != "429"),
        "Amplitude429": codes.get("429", 0),
        "Amplitude5xx": count(lambda c: c.startswith("5")),
        "AmplitudeNoAnswer": codes.get("reset", 0) + codes.get("timeout", 0),
    }


def emf_document(
    counts: InvocationCounts, *, namespace: str = DEFAULT_NAMESPACE, timestamp_ms: int | None = None
) -> dict[str, Any]:
    """The EMF document for ``counts`` (one invocation: its single webhook answer in ``counts.statuses``).

    Metrics with dimension ``Service``: the event outcomes, Amplitude's answers (``Amplitude5xx`` ...,
    ``AmplitudeNoAnswer`` for resets and timeouts) and ``RequestSeconds``; with ``Service`` and ``Status``
    (the webhook's answer): ``Requests``. ``AmplitudeCodes`` keeps every code, for Logs Insights.
    """
    status = str(max(counts.statuses, key=counts.statuses.__getitem__)) if counts.statuses else "none"
    values: dict[str, int | float] = {name: counts.outcomes.get(o, 0) for name, o in _EVENT_METRICS.items()}
    values.update(_amplitude(counts.amplitude_codes))
    count_metrics = [{"Name": name, "Unit": "Count"} for name in values]
    values["RequestSeconds"] = round(counts.seconds, 6)
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [["Service"]],
                    "Metrics": [*count_metrics, {"Name": "RequestSeconds", "Unit": "Seconds"}],
                },
                {
                    "Namespace": namespace,
                    "Dimensions": [["Service", "Status"]],
                    "Metrics": [{"Name": "Requests", "Unit": "Count"}],
                },
            ],
        },
        "Service": SERVICE,
        "Status": status,
        **values,
        "Requests": sum(counts.statuses.values()),
        "AmplitudeCodes": dict(sorted(counts.amplitude_codes.items())),
    }


def emit(
    counts: InvocationCounts,
    status: int,
    seconds: float,
    environ: Mapping[str, str],
    stream: IO[str] | None = None,
) -> None:
    """Record the invocation's answer, write its EMF line (stdout: Lambda sends it to CloudWatch Logs) and
    start the next invocation from zero."""
    counts.response(status, seconds)
    namespace = environ.get(NAMESPACE_ENV, "").strip() or DEFAULT_NAMESPACE
    line = json.dumps(emf_document(counts, namespace=namespace), separators=(",", ":"))
    out = sys.stdout if stream is None else stream
    out.write(line + "\n")
    out.flush()
    counts.clear()
