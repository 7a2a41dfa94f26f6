"""Issue 16, lifecycle: the provider's listener API and what importing the package does (nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from segment_exposure import Exposure, SegmentExposureTrackingProvider
from segment_exposure.testing import InMemorySegmentClient, capture_exposures


def test_listener_gets_each_accepted_exposure_until_removed() -> None:
    provider = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    other = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    seen: list[dict[str, Any]] = []
    try:
        provider.add_listener(seen.append)
        provider.track(Exposure("flag", "on"), {"user_id": "user-00001"})
        provider.track(Exposure("flag", "on"), {"user_id": "user-00001"})  # a repeat: not accepted again
        other.track(Exposure("flag", "on"), {"user_id": "user-00002"})  # another provider: not ours
        provider.remove_listener(seen.append)
        provider.remove_listener(seen.append)  # removing twice is harmless
        provider.track(Exposure("flag", "off"), {"user_id": "user-00001"})
        assert [(m["user_id"], m["properties"]["variant"]) for m in seen] == [("user-00001", "on")]
        assert seen[0]["event"] == "$exposure"
        with pytest.raises(TypeError, match="callable"):
            provider.add_listener("not callable")  # type: ignore[arg-type]
    finally:
        provider.shutdown(1)
        other.shutdown(1)


def test_a_failing_listener_does_not_affect_tracking(caplog: pytest.LogCaptureFixture) -> None:
    client = InMemorySegmentClient()
    provider = SegmentExposureTrackingProvider(analytics=client)

    def broken(message: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    try:
        provider.add_listener(broken)
        assert provider.track(Exposure("flag", "on"), {"user_id": "user-00001"}) is True
        assert provider.flush(5)
        assert len(client.messages) == 1
        assert "listener" in caplog.text
    finally:
        provider.shutdown(1)


def test_capture_exposures_can_target_one_provider() -> None:
    provider = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    other = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    try:
        with capture_exposures(provider) as captured:
            provider.track(Exposure("flag", "on"), {"user_id": "user-00001"})
            other.track(Exposure("flag", "on"), {"user_id": "user-00002"})
        assert [m["user_id"] for m in captured] == ["user-00001"]
        assert provider._listeners == () and other._listeners == ()
    finally:
        provider.shutdown(1)
        other.shutdown(1)


def test_capture_exposures_covers_providers_created_inside_and_detaches() -> None:
    before = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    try:
        with capture_exposures() as captured:
            inside = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
            before.track(Exposure("flag", "on"), {"user_id": "user-00001"})
            inside.track(Exposure("flag", "on"), {"user_id": "user-00002"})
        assert sorted(m["user_id"] for m in captured) == ["user-00001", "user-00002"]
        assert before._listeners == () and inside._listeners == ()
        inside.shutdown(1)
    finally:
        before.shutdown(1)
