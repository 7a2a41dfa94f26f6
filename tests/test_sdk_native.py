"""route_sdk_exposures: the SDK's own exposure tracking (evaluate_v2 with tracks_exposure) into Segment.

A LocalEvaluationClient configured with an ExposureConfig would send [Experiment] Exposure events to
Amplitude through amplitude-analytics; here amplitude-analytics points at a local Amplitude emulator,
so a test can show both that the stock path reaches it and that the routed path never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import wait
from typing import Any

import amplitude_experiment.version
import pytest
from amplitude_experiment.exposure import ExposureConfig
from amplitude_experiment.local.evaluate_options import EvaluateOptions

from segment_exposure import AmplitudeEmulator, FlagConfigServer, SegmentCollector, route_sdk_exposures
from segment_exposure.experiment import (
    TESTED_SDK_VERSIONS,
    SegmentExposureService,
    UntestedSDKVersionError,
    check_tested_sdk_version,
)

from .experiment_fixtures import ALICE, BOB, ERIN, EXPERIMENT_KEY, by_user, checkout_flag

TRACK = EvaluateOptions(tracks_exposure=True)
FLAGS = {"checkout-flow", "quiet-flag"}


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator() as emulator:
        yield emulator


@pytest.fixture
def sdk_client(make_local_client: Any, amplitude: AmplitudeEmulator) -> Iterator[Callable[[], Any]]:
    """LocalEvaluationClients whose own exposure tracking sends to the Amplitude emulator."""
    instances: list[Any] = []

    def make() -> Any:
        config = ExposureConfig(
            api_key="amplitude-test-key-1", server_url=amplitude.http_api_url, flush_interval_millis=50
        )
        client = make_local_client(exposure_config=config)
        instances.append(client.exposure_service.amplitude)
        return client

    yield make
    for instance in instances:
        instance.shutdown()


def _flush_amplitude_analytics(instance: Any) -> list[Any]:
    """Flush an amplitude-analytics client; returns the batches it had to send (their futures)."""
    futures = [f for f in instance.flush() if f is not None]
    _, not_done = wait(futures, timeout=10)
    assert not not_done
    return futures


def test_control_the_sdk_alone_sends_to_amplitude(sdk_client: Any, amplitude: AmplitudeEmulator) -> None:
    """Without routing, the stock service reaches the emulator: the setup would catch a leak."""
    client = sdk_client()
    client.evaluate_v2(ALICE, FLAGS, TRACK)
    client.evaluate_v2(ERIN, FLAGS, TRACK)  # default variant: the SDK sends nothing for it
    assert _flush_amplitude_analytics(client.exposure_service.amplitude)
    assert amplitude.wait_for_ingested(1, timeout=10)
    [event] = amplitude.ingested
    assert event["event_type"] == "[Experiment] Exposure"
    assert event["user_id"] == "alice-0001"
    assert event["event_properties"]["[Experiment] Variant"] == "treatment"


def test_routed_exposures_go_through_segment_and_never_amplitude_analytics(
    sdk_client: Any, make_provider: Any, collector: SegmentCollector, amplitude: AmplitudeEmulator
) -> None:
    client = sdk_client()
    service = route_sdk_exposures(client, make_provider())
    assert client.exposure_service is service
    for user in (ALICE, BOB, ERIN):
        variants = client.evaluate_v2(user, FLAGS, TRACK)
        assert set(variants) == FLAGS  # evaluation itself is unchanged
    client.evaluate_v2(ALICE, {"value-only"})  # no tracks_exposure: nothing is tracked
    assert service.provider.flush(10)

    events = by_user(collector)
    assert {k: m["properties"] for k, m in events.items()} == {
        "alice-0001": {"flag_key": "checkout-flow", "variant": "treatment", "experiment_key": EXPERIMENT_KEY},
        "bob-00002": {"flag_key": "checkout-flow", "variant": "control", "experiment_key": EXPERIMENT_KEY},
        "erin-00005": {"flag_key": "checkout-flow", "experiment_key": EXPERIMENT_KEY},  # default: unset
    }
    assert events["alice-0001"]["anonymousId"] == "device-alice-1"
    # Nothing was queued in amplitude-analytics, and nothing reached Amplitude.
    assert _flush_amplitude_analytics(service.replaced.amplitude) == []
    assert amplitude.requests == []
    stats = service.stats()
    assert (stats["tracked"], stats["tracked_unset"]) == (3, 1)
    assert stats["suppressed"]["track_exposure_false"] == 3


def test_routing_can_skip_default_variants(
    make_local_client: Any, make_provider: Any, collector: SegmentCollector
) -> None:
    client = make_local_client()  # no ExposureConfig: tracks_exposure alone did nothing before
    service = route_sdk_exposures(client, make_provider(), track_default_variants=False)
    client.evaluate_v2(ERIN, FLAGS, TRACK)
    client.evaluate_v2(BOB, FLAGS, TRACK)
    assert service.provider.flush(10)
    assert list(by_user(collector)) == ["bob-00002"]
    assert service.stats()["suppressed"]["default_variant"] == 1


def test_dependencies_a_holdout_is_an_exposure_a_mutual_exclusion_group_is_not(
    make_local_client: Any, make_provider: Any, collector: SegmentCollector, flag_server: FlagConfigServer
) -> None:
    mutex = {
        "key": "checkout-mutex",
        "metadata": {"deployed": True, "evaluationMode": "local", "flagType": "mutual-exclusion-group"},
        "segments": [{"variant": "slot-1"}],
        "variants": {"slot-1": {"key": "slot-1"}},
    }
    holdout = {
        "key": "q4-holdout",
        "metadata": {"deployed": True, "evaluationMode": "local", "flagType": "holdout-group"},
        "segments": [{"variant": "on"}],  # nobody held out: the experiment runs for everyone
        "variants": {"on": {"key": "on", "value": "on"}, "holdout": {"key": "holdout", "value": "holdout"}},
    }
    flag = checkout_flag()
    flag["dependencies"] = ["checkout-mutex", "q4-holdout"]
    flag["segments"].insert(
        0,
        {
            "conditions": [
                [{"op": "is not", "selector": ["result", "checkout-mutex", "key"], "values": ["slot-1"]}]
            ],
            "variant": "off",
        },
    )
    flag_server.set_flags([mutex, holdout, flag])
    client = make_local_client()
    service = route_sdk_exposures(client, make_provider())
    variants = client.evaluate_v2(ALICE, {"checkout-flow"}, TRACK)
    assert set(variants) == {
        "checkout-mutex",
        "q4-holdout",
        "checkout-flow",
    }  # dependencies are evaluated too
    assert variants["checkout-flow"].key == "treatment"  # alice is in the group's slot
    assert service.provider.flush(10)
    # As Amplitude's Python SDK: the holdout's user property is set, the mutual-exclusion group's never.
    assert sorted((e["properties"]["flag_key"], e["properties"]["variant"]) for e in collector.events()) == [
        ("checkout-flow", "treatment"),
        ("q4-holdout", "on"),
    ]
    assert service.stats()["suppressed"]["group_flag"] == 1


def test_stop_flushes_the_provider(
    make_local_client: Any, make_provider: Any, collector: SegmentCollector
) -> None:
    client = make_local_client()
    route_sdk_exposures(client, make_provider())
    client.evaluate_v2(ALICE, FLAGS, TRACK)
    client.stop(10)  # waits on the service's flush, as it would on amplitude-analytics
    assert [m["userId"] for m in collector.events()] == ["alice-0001"]


def test_restore_puts_the_sdk_service_back(
    sdk_client: Any, make_provider: Any, collector: SegmentCollector, amplitude: AmplitudeEmulator
) -> None:
    client = sdk_client()
    original = client.exposure_service
    service = route_sdk_exposures(client, make_provider())
    again = route_sdk_exposures(client, make_provider())  # routing twice replaces, never stacks
    assert again.replaced is original
    assert client.exposure_service is again and service._client is None
    again.restore()
    assert client.exposure_service is original
    client.evaluate_v2(ALICE, FLAGS, TRACK)
    assert _flush_amplitude_analytics(original.amplitude)
    assert amplitude.wait_for_ingested(1, timeout=10)
    assert collector.events() == []


def test_untested_sdk_version_is_refused_at_set_up(
    make_local_client: Any, make_provider: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The route is gated to a series, not a patch release: whichever 1.13.x is installed passes.
    assert TESTED_SDK_VERSIONS == ((1, 13),)
    installed = str(amplitude_experiment.version.__version__)
    assert installed.startswith("1.13.")
    assert check_tested_sdk_version() == installed
    for version in ("1.13.0", "1.13.7", "1.13.12"):
        assert check_tested_sdk_version(version) == version
    for version in ("1.14.0", "2.0.0", "1.12.9", "garbage"):
        with pytest.raises(UntestedSDKVersionError, match=r"tested with 1\.13\.x"):
            check_tested_sdk_version(version)
    client = make_local_client()
    before = client.exposure_service
    monkeypatch.setattr(amplitude_experiment.version, "__version__", "1.14.0")
    with pytest.raises(UntestedSDKVersionError, match=r"1\.14\.0 is installed"):
        route_sdk_exposures(client, make_provider())
    assert client.exposure_service is before  # nothing was changed


def test_only_local_clients_and_bad_input_never_raises(
    remote_client: Any, make_local_client: Any, make_provider: Any
) -> None:
    with pytest.raises(TypeError, match="LocalEvaluationClient"):
        route_sdk_exposures(remote_client, make_provider())
    service = route_sdk_exposures(make_local_client(), make_provider())
    service.track(object())  # not an SDK Exposure: counted, never raised into evaluate_v2
    assert service.stats()["errors"] == 1
    assert isinstance(service, SegmentExposureService)
