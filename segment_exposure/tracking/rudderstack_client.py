"""Everything that knows the inside of RudderStack's ``rudder-sdk-python`` (checked: 2.1.4-2.1.9).

It is a fork of Segment's analytics-python: the same ``Client``/``Consumer`` threads and queue, so the
queue, consumer and session helpers of ``segment_client`` serve it as they are, and the start-up
self-check (``segment_check``) verifies them against this SDK too. What differs is here:

- its wire message adds ``channel: "server"``, keeps the timestamp's microseconds and defaults
  ``integrations`` to ``{"All": true}``;
- its limits: 4 MiB per message and batch in the SDK, and 4000 KiB per request at the data plane
  (rudder-server's default ``maxReqSizeInKB``), which is the one that bites;
- failures are ``APIError`` with a status; a 4xx other than 429 is final (the SDK's own rule).

``rudderstack.analytics`` reads a ``.env`` file when imported (python-dotenv), so it is imported only
when a provider is told to use it.
"""

from __future__ import annotations

from typing import Any

from segment_exposure._signals import main_thread_signals
from segment_exposure.tracking.segment_client import accepts_direct_enqueue, check_async_options

__all__ = ["RUDDERSTACK", "RUDDERSTACK_MAX_REQUEST_BYTES", "RudderStackSdk"]

#: rudder-server's gateway refuses a request body over 4000 KiB (``Gateway.maxReqSizeInKB``) with 413.
RUDDERSTACK_MAX_REQUEST_BYTES = 4000 * 1024
#: Room for the request's own fields (``batch``, ``sentAt``) around the messages.
_ENVELOPE = 1024


class RudderStackSdk:
    """rudder-sdk-python (``rudderstack.analytics``), as an ``AnalyticsSdk``."""

    name = "rudderstack"
    package = "rudderstack.analytics"
    label = "RudderStack"
    #: One message must fit in a request the data plane takes.
    max_message_bytes = RUDDERSTACK_MAX_REQUEST_BYTES - _ENVELOPE
    max_batch_bytes = RUDDERSTACK_MAX_REQUEST_BYTES - _ENVELOPE
    default_upload_size = 100
    #: Its consumer closes a batch only after crossing 4 MiB: what it gathers is split to fit the data plane.
    consumer_batch_limit: int | None = RUDDERSTACK_MAX_REQUEST_BYTES - _ENVELOPE
    logger_names: tuple[str, ...] = ("rudderstack",)

    def owns(self, client: object) -> bool:
        return type(client).__module__.startswith(self.package)

    def make_client(self, write_key: str, host: str | None, **options: Any) -> Any:
        """A RudderStack client: asynchronous, one consumer thread, ``host`` its data plane URL."""
        if not host:
            raise ValueError(
                "RudderStack needs host= (your data plane URL, e.g. https://<name>.dataplane.rudderstack.com)"
            )
        check_async_options(options, "rudder-sdk-python")
        unknown = {"oauth_client_id", "oauth_client_key", "oauth_key_id", "oauth_auth_server", "oauth_scope"}
        if given := sorted(unknown & set(options)):
            raise ValueError(f"RudderStack's client has no OAuth options ({', '.join(given)})")
        # 500 exposures (~350 KB) per request, as with Segment's client: far under the 4000 KiB limit.
        options.setdefault("upload_size", 500)
        from rudderstack.analytics import Client

        with main_thread_signals():  # its consumer thread starts in the constructor
            return Client(write_key, host=host, **options)

    def probe_client(self) -> Any:
        from rudderstack.analytics import Client

        return Client("self-check-write-key", host="http://127.0.0.1", send=False, max_queue_size=1)

    def accepts_direct_enqueue(self, client: Any) -> bool:
        from rudderstack.analytics import Client

        return accepts_direct_enqueue(client, Client)

    def wire_message(self, track: dict[str, Any]) -> dict[str, Any]:
        """The message ``Client.track(**track)`` queues, built directly (pinned by the self-check)."""
        from rudderstack.analytics.version import VERSION

        context = track["context"]
        context["library"] = {"name": "analytics-python", "version": VERSION}
        return {
            "integrations": track.get("integrations") or {"All": True},
            "anonymousId": track["anonymous_id"],
            "properties": track["properties"],
            "timestamp": track["timestamp"].isoformat(),
            "context": context,
            "userId": track["user_id"],
            "type": "track",
            "event": track["event"],
            "messageId": track["message_id"],
            "channel": "server",
        }

    def is_fatal(self, exc: BaseException) -> bool:
        """A 4xx other than 429, as the SDK's own consumer decides (it retries everything else)."""
        from rudderstack.analytics.request import APIError

        return isinstance(exc, APIError) and 400 <= exc.status < 500 and exc.status != 429

    def retry_after_seconds(self, exc: BaseException) -> float:
        """Always 0: ``APIError`` keeps no response, so a ``Retry-After`` cannot be read."""
        return 0.0

    def post_batch(
        self, client: Any, batch: list[dict[str, Any]], *, timeout: float, retry_count: int
    ) -> None:
        """POST ``batch`` through RudderStack's own ``request.post`` (it takes no retry count)."""
        from rudderstack.analytics.request import post

        post(
            client.write_key,
            getattr(client, "host", None),
            gzip=bool(getattr(client, "gzip", True)),
            timeout=min(float(getattr(client, "timeout", 15) or 15), timeout),
            proxies=getattr(client, "proxies", None),
            batch=batch,
        )

    def __repr__(self) -> str:
        return "<AnalyticsSdk rudderstack>"


#: rudder-sdk-python.
RUDDERSTACK = RudderStackSdk()
