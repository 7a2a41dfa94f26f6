"""The RudderStack collector against the real rudder-sdk-python client, over real HTTP.

What RudderStack's data plane enforces and its SDK trips over: gzipped bodies (the SDK's default), the write
key as Basic auth only, and one 4000 KiB request limit answered with 413. The SDK's own checks are 4 MiB, a
little looser, and it closes a batch only after crossing 4 MiB: so a message or batch between the two limits
leaves the SDK and is refused, and the SDK drops it (a 4xx is not retried). These tests pin that behaviour,
which the provider over RudderStack's client must live with (notes/i26-provider-plan.md).
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from segment_exposure.emulators import RUDDERSTACK, SEGMENT
from segment_exposure.testing import RudderStackCollector, SegmentCollector

analytics = pytest.importorskip("rudderstack.analytics", reason="the rudderstack extra is not installed")

WRITE_KEY = "rudder-write-key-4f2a"
LIMIT = RUDDERSTACK.max_batch_bytes  # 4000 KiB: rudder-server's default Gateway.maxReqSizeInKB
SDK_LIMIT = 4 << 20  # rudder-sdk-python's MAX_MSG_SIZE and BATCH_SIZE_LIMIT


class Errors:
    """The SDK's ``on_error`` callback: what it gave up on, so a test can wait for it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Exception, list[dict[str, Any]]]] = []
        self._event = threading.Event()

    def __call__(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        self.calls.append((error, batch))
        self._event.set()

    def wait(self, timeout: float = 10.0) -> bool:
        return self._event.wait(timeout)


@pytest.fixture
def collector() -> Iterator[RudderStackCollector]:
    with RudderStackCollector(WRITE_KEY) as server:
        yield server


def client(url: str, errors: Errors | None = None, *, write_key: str = WRITE_KEY, **options: Any) -> Any:
    return analytics.Client(
        write_key, host=url, on_error=errors, **{"upload_interval": 0.05, "max_retries": 2, **options}
    )


def padded(size: int) -> dict[str, str]:
    """Properties that make a track message about ``size`` bytes of JSON."""
    return {"flag_key": "checkout", "variant": "treatment", "pad": "x" * size}


def test_the_real_client_delivers_gzipped_with_basic_auth(collector: RudderStackCollector) -> None:
    rudder = client(collector.url)
    for i in range(3):
        rudder.track(
            user_id=f"user-{i:05d}",
            event="$exposure",
            properties={"flag_key": "checkout", "variant": "treatment"},
            message_id=f"msg-{i}",
        )
    rudder.flush()
    assert collector.wait_for(3, timeout=10)
    events = collector.events()
    assert sorted(e["messageId"] for e in events) == ["msg-0", "msg-1", "msg-2"]
    assert collector.gzipped_requests == collector.requests >= 1, "the SDK gzips every body by default"
    first = events[0]
    # What RudderStack's SDK adds, unlike Segment's: a channel and integrations {"All": true} by default;
    # the library name is still analytics-python's, so it cannot tell the two apart.
    assert first["channel"] == "server"
    assert first["integrations"] == {"All": True}
    assert first["context"]["library"]["name"] == "analytics-python"
    assert not collector.rejected
    rudder.shutdown()


def test_a_wrong_write_key_is_refused_and_not_retried(collector: RudderStackCollector) -> None:
    errors = Errors()
    rudder = client(collector.url, errors, write_key="another-write-key")
    rudder.track(user_id="user-00001", event="$exposure", properties={"flag_key": "checkout"})
    rudder.flush()
    assert errors.wait()
    (error, batch), *_ = errors.calls
    assert getattr(error, "status", None) == 401 and len(batch) == 1
    assert collector.requests == 1, "a 401 is final for the SDK: no retry"
    assert collector.messages == []
    rudder.shutdown()


def test_the_write_key_in_the_body_is_not_enough() -> None:
    """Segment takes a body's writeKey instead of Basic auth; RudderStack's data plane does not."""
    body = {"writeKey": WRITE_KEY, "batch": [{"type": "track", "event": "$exposure", "userId": "user-00001"}]}
    with RudderStackCollector(WRITE_KEY) as rudder, SegmentCollector(WRITE_KEY) as segment:
        refused = requests.post(f"{rudder.url}/v1/batch", json=body, timeout=5)
        accepted = requests.post(f"{segment.url}/v1/batch", json=body, timeout=5)
        authed = requests.post(f"{rudder.url}/v1/batch", json=body, auth=(WRITE_KEY, ""), timeout=5)
        wrong = requests.post(f"{rudder.url}/v1/batch", json=body, auth=("nope", ""), timeout=5)
    assert refused.status_code == 401
    assert refused.json()["message"] == "Failed to read writeKey from header"
    assert wrong.status_code == 401 and wrong.json()["message"] == "invalid write key"
    assert accepted.status_code == 200 and authed.status_code == 200
    assert len(rudder.messages) == 1 and len(segment.messages) == 1


def _post(url: str, messages: list[dict[str, Any]]) -> requests.Response:
    data = gzip.compress(json.dumps({"batch": messages}).encode())
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    return requests.post(f"{url}/v1/batch", data=data, headers=headers, auth=(WRITE_KEY, ""), timeout=30)


def test_limits_are_rudderstacks_not_segments(collector: RudderStackCollector) -> None:
    """A 100 KB message and a 3.8 MB batch pass (Segment refuses both); 4000 KiB + 1 byte is a 413."""
    message = {"type": "track", "event": "$exposure", "userId": "user-00001", "properties": padded(100_000)}
    assert _post(collector.url, [message]).status_code == 200
    with SegmentCollector(WRITE_KEY) as segment:
        refused = _post(segment.url, [message])
    assert refused.status_code == 400 and refused.json()["message"] == "message over 32KB"
    assert SEGMENT.max_message_bytes < 100_000 < RUDDERSTACK.max_message_bytes

    near = {**message, "properties": padded(1_900_000)}
    assert _post(collector.url, [near, near]).status_code == 200
    # Over the limit once unzipped, though the gzipped body is tiny: the limit is on the JSON.
    body_size = len(json.dumps({"batch": [near, near, near]}).encode())
    assert body_size > LIMIT
    too_large = _post(collector.url, [near, near, near])
    assert too_large.status_code == 413
    assert too_large.json()["message"] == "Request size exceeds max limit"
    assert len(collector.messages) == 3
    assert collector.rejected == [(413, "Request size exceeds max limit")]


def test_a_message_between_the_two_limits_leaves_the_sdk_and_is_refused(
    collector: RudderStackCollector,
) -> None:
    errors = Errors()
    rudder = client(collector.url, errors)
    size = (LIMIT + SDK_LIMIT) // 2  # over the data plane's 4000 KiB, under the SDK's 4 MiB
    rudder.track(user_id="user-00001", event="$exposure", properties=padded(size), message_id="big")
    rudder.flush()
    assert errors.wait()
    (error, batch), *_ = errors.calls
    assert getattr(error, "status", None) == 413 and [m["messageId"] for m in batch] == ["big"]
    assert collector.requests == 1, "a 413 is final for the SDK: the message is dropped, not retried"
    with pytest.raises(RuntimeError, match="exceeds"):  # over 4 MiB the SDK refuses it itself
        rudder.track(user_id="user-00001", event="$exposure", properties=padded(SDK_LIMIT))
    rudder.shutdown()


def test_the_sdk_builds_a_batch_over_the_limit_and_loses_it(collector: RudderStackCollector) -> None:
    """The SDK closes a batch after it crosses 4 MiB: three 1.5 MB messages go as one 4.5 MB request."""
    errors = Errors()
    rudder = client(collector.url, errors, upload_size=100, upload_interval=2.0)
    for i in range(3):
        rudder.track(
            user_id="user-00001", event="$exposure", properties=padded(1_500_000), message_id=f"m{i}"
        )
    rudder.flush()
    assert errors.wait()
    (error, batch), *_ = errors.calls
    assert getattr(error, "status", None) == 413
    assert [m["messageId"] for m in batch] == ["m0", "m1", "m2"], "one request for the three"
    assert collector.messages == []
    rudder.shutdown()
