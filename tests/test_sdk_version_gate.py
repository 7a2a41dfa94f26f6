"""route_sdk_exposures refuses, at set-up, an installed amplitude-experiment it was not tested with.

Runs unchanged on every SDK version CI installs (.ci/versions): on a tested series the route is set
up; on any other (the extra's floor, for one) it raises before touching the client, while the public
ExposureTrackingClient keeps working.
"""

from __future__ import annotations

from typing import Any

import pytest

from segment_exposure import ExposureTrackingClient, SegmentCollector, route_sdk_exposures
from segment_exposure.experiment import TESTED_SDK_VERSIONS, UntestedSDKVersionError
from segment_exposure.experiment._sdk import sdk_version

from .experiment_fixtures import ALICE


def _tested(version: str) -> bool:
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) in TESTED_SDK_VERSIONS


def test_installed_sdk_is_gated_at_set_up(
    make_local_client: Any, make_provider: Any, collector: SegmentCollector
) -> None:
    installed = sdk_version()
    client = make_local_client()
    before = client.exposure_service
    if _tested(installed):
        service = route_sdk_exposures(client, make_provider())
        assert client.exposure_service is service
        service.restore()
    else:
        with pytest.raises(UntestedSDKVersionError, match=rf"{installed.replace('.', '[.]')} is installed"):
            route_sdk_exposures(client, make_provider())
    assert client.exposure_service is before
    # The public wrapper relies on public API only: it works on every version the extra allows.
    tracking = ExposureTrackingClient(make_local_client(), make_provider())
    assert tracking.variant(ALICE, "checkout-flow").value == "treatment"
    assert tracking.provider.flush(10)
    [event] = collector.events()
    assert event["event"] == "$exposure" and event["userId"] == ALICE.user_id
    assert event["properties"]["flag_key"] == "checkout-flow"
    assert event["properties"]["variant"] == "treatment"
