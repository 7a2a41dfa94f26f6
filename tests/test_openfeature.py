"""OpenFeature: ExposureHook and AmplitudeExperimentProvider against the real openfeature-sdk.

The hook runs under the SDK's own InMemoryProvider and under our provider; exposures land at the local
Segment collector over real HTTP. The provider wraps real amplitude-experiment clients pointed at the
local flag server. Each test names the OpenFeature specification requirement it covers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from amplitude_experiment import User
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import FeatureProvider, ProviderStatus
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
from openfeature.track import TrackingEventDetails

from segment_exposure import (
    AmplitudeExperimentProvider,
    ExposureHook,
    FlagConfigServer,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    bind_user,
)
from segment_exposure.emulators.flag_server import FLAGS_PATH, VARDATA_PATH

from .conftest import wait_until
from .experiment_fixtures import ALICE, BOB, CAROL, ERIN, EXPERIMENT_KEY, base_flags, by_user

# A flag whose variants come from the catch-all segment's allocation (SPLIT), with typed payloads.
SPLIT_FLAG: dict[str, Any] = {
    "key": "price-test",
    "metadata": {
        "deployed": True,
        "evaluationMode": "local",
        "flagType": "experiment",
        "flagVersion": 2,
        "experimentKey": "exp-price-2",
    },
    "segments": [
        {
            "bucket": {
                "selector": ["context", "user", "user_id"],
                "salt": "price-test-1",
                "allocations": [
                    {"range": [0, 100], "distributions": [{"variant": "on", "range": [0, 42949673]}]}
                ],
            },
            "metadata": {"segmentName": "All Other Users"},
            "variant": "off",
        }
    ],
    "variants": {
        "off": {"key": "off", "metadata": {"default": True}},
        "on": {"key": "on", "value": "on", "payload": 7},
    },
}


def ctx(user: User) -> EvaluationContext:
    return EvaluationContext(targeting_key=user.user_id, attributes={"device_id": user.device_id})


def set_and_wait(provider: FeatureProvider, domain: str) -> None:
    """Register and wait for initialize(): openfeature-sdk 0.10 has set_provider_and_wait; in 0.9
    set_provider itself runs initialize() before returning."""
    set_and_wait_fn = getattr(api, "set_provider_and_wait", None)
    if set_and_wait_fn is not None:
        try:
            set_and_wait_fn(provider, domain)
        except Exception:
            pass  # a failed initialize() raises here on 0.10; the tests read the status
    else:
        api.set_provider(provider, domain)


@pytest.fixture
def openfeature_api() -> Iterator[None]:
    """The SDK's global API, cleared after the test (providers shut down, hooks removed)."""
    yield
    api.clear_hooks()
    api.clear_providers()


@pytest.fixture
def in_memory_client(openfeature_api: None) -> Callable[..., Any]:
    def make(flags: dict[str, InMemoryFlag[Any]], domain: str = "in-memory") -> Any:
        set_and_wait(InMemoryProvider(flags), domain)
        return api.get_client(domain)

    return make


def experiment_flag(**metadata: Any) -> InMemoryFlag[str]:
    return InMemoryFlag("treatment", {"control": "control", "treatment": "treatment"}, flag_metadata=metadata)


# -- the hook, under the SDK's InMemoryProvider ------------------------------------------------------


def test_hook_lands_one_exposure_per_user_at_segment(
    collector: SegmentCollector, make_provider: Any, in_memory_client: Any
) -> None:
    """Requirement 4.3.6: the after stage runs after resolution, with the evaluation details; the hook
    turns each into one $exposure (flag key, details.variant, flag metadata experimentKey), attributed
    to the context's targeting_key and device_id; repeats are the provider's to deduplicate."""
    provider = make_provider()
    hook = ExposureHook(provider)
    client = in_memory_client({"checkout": experiment_flag(experimentKey="exp-of-1", flagVersion=3)})
    client.add_hooks([hook])
    for _ in range(3):
        assert client.get_string_value("checkout", "off", ctx(ALICE)) == "treatment"
    assert client.get_string_value("checkout", "off", ctx(BOB)) == "treatment"
    assert provider.flush(10)

    events = by_user(collector)
    assert set(events) == {ALICE.user_id, BOB.user_id}  # three evaluations by alice, one exposure
    for user in (ALICE, BOB):
        message = events[user.user_id]
        assert message["anonymousId"] == user.device_id
        assert message["properties"] == {
            "flag_key": "checkout",
            "variant": "treatment",
            "experiment_key": "exp-of-1",
        }
    assert hook.stats()["tracked"] == 4  # the repeats were accepted, as deduplicated
    assert provider.stats()["deduplicated"] == 2


def test_hook_takes_missing_ids_from_the_bound_request(
    collector: SegmentCollector, make_provider: Any, in_memory_client: Any
) -> None:
    """Requirement 3.1.1: the targeting key identifies the subject; inside a request bound by an
    integration, the request's identity fills what the context leaves out (and its Segment context
    comes along), but never overrides a context that names someone else."""
    provider = make_provider()
    client = in_memory_client({f"flag-{i}": experiment_flag(experimentKey=f"exp-{i}") for i in range(4)})
    client.add_hooks([ExposureHook(provider)])
    request_user = User(user_id="req-user-0001", device_id="req-device-0001")
    with bind_user(request_user, context={"userAgent": "of-test-agent/1.0"}):
        client.get_string_value("flag-0", "off")  # no context at all: the request's user
        client.get_string_value("flag-1", "off", EvaluationContext(targeting_key="req-user-0001"))
        client.get_string_value("flag-2", "off", ctx(CAROL))  # someone else entirely
        # a device the request does not know: someone else, so the request's user_id is not borrowed
        client.get_string_value("flag-3", "off", EvaluationContext(attributes={"device_id": "other-dev"}))
    assert provider.flush(10)

    got = {m["properties"]["flag_key"]: m for m in collector.events()}
    assert set(got) == {"flag-0", "flag-1", "flag-2", "flag-3"}
    for flag in ("flag-0", "flag-1"):
        assert (got[flag]["userId"], got[flag]["anonymousId"]) == ("req-user-0001", "req-device-0001")
        assert got[flag]["context"]["userAgent"] == "of-test-agent/1.0"
    assert (got["flag-2"]["userId"], got["flag-2"]["anonymousId"]) == (CAROL.user_id, CAROL.device_id)
    assert "userAgent" not in got["flag-2"]["context"]
    assert (got["flag-3"]["userId"], got["flag-3"]["anonymousId"]) == (None, "other-dev")


def test_hook_skips_errors_and_track_exposure_false_and_unsets_defaults(
    collector: SegmentCollector, make_provider: Any, in_memory_client: Any
) -> None:
    """Requirement 4.3.6 and 4.3.7: after runs for successful resolutions only; an error (here
    FLAG_NOT_FOUND and TYPE_MISMATCH) tracks nothing, as does trackExposure false; a DEFAULT resolution
    tracks an unset (no variant), or nothing with track_default_variants=False."""

    def default_reason(flag: InMemoryFlag[str], context: EvaluationContext) -> FlagResolutionDetails[str]:
        return FlagResolutionDetails(
            value="off", variant="off", reason=Reason.DEFAULT, flag_metadata=flag.flag_metadata
        )

    provider = make_provider()
    hook = ExposureHook(provider)
    flags = {
        "quiet": experiment_flag(experimentKey="exp-quiet", trackExposure=False),
        "defaulted": InMemoryFlag(
            "off", {"off": "off"}, flag_metadata={"experimentKey": "exp-d"}, context_evaluator=default_reason
        ),
        "checkout": experiment_flag(experimentKey="exp-c"),
        "odd": InMemoryFlag("", {"": "served"}, flag_metadata={"experimentKey": "exp-odd"}),
    }
    client = in_memory_client(flags)
    client.add_hooks([hook])
    assert client.get_string_value("quiet", "off", ctx(ALICE)) == "treatment"
    assert client.get_string_details("missing", "off", ctx(ALICE)).error_code == ErrorCode.FLAG_NOT_FOUND
    assert client.get_boolean_details("checkout", False, ctx(ALICE)).error_code == ErrorCode.TYPE_MISMATCH
    assert client.get_string_details("defaulted", "off", ctx(ALICE)).reason == Reason.DEFAULT
    assert client.get_string_details("odd", "off", ctx(ALICE)).value == "served"  # an empty variant
    skipping = ExposureHook(provider, track_default_variants=False)
    other = in_memory_client(flags, domain="skipping")
    other.add_hooks([skipping])
    assert other.get_string_value("defaulted", "off", ctx(BOB)) == "off"
    assert provider.flush(10)

    events = collector.events()
    assert [(m["userId"], m["properties"]) for m in events] == [
        (ALICE.user_id, {"flag_key": "defaulted", "experiment_key": "exp-d"})  # an unset
    ]
    skipped = hook.stats()["skipped"]
    assert skipped["track_exposure_false"] == 1 and skipped["error"] == 2 and skipped["no_variant"] == 1
    assert hook.stats()["tracked_unset"] == 1
    assert skipping.stats()["skipped"]["default_variant"] == 1


def test_a_failing_exposure_never_reaches_the_evaluation(
    collector: SegmentCollector, make_provider: Any, in_memory_client: Any
) -> None:
    """Requirement 1.4.10 (1.4.9 before spec 0.8) and 4.4.5: evaluation never fails because of the
    hook; an exception in after would send the evaluation to the error hooks and the default value.
    An empty flag key cannot become an exposure (Exposure refuses it): the hook counts the error and
    the resolved value stands."""
    provider = make_provider()
    hook = ExposureHook(provider)
    client = in_memory_client({"": experiment_flag(experimentKey="exp-empty-key")})
    client.add_hooks([hook])
    details = client.get_string_details("", "fallback", ctx(ALICE))
    assert (details.value, details.error_code, details.reason) == ("treatment", None, Reason.STATIC)
    assert hook.stats()["errors"] == 1 and hook.stats()["tracked"] == 0


def test_evaluations_stay_fast_while_segment_hangs(
    collector: SegmentCollector, make_provider: Any, in_memory_client: Any
) -> None:
    """Requirement 4.3.6 with 2.7.1's rule for tracking I/O ("should not block the function call"):
    while Segment's endpoint accepts connections and never answers, evaluations with the hook cost
    what they cost with Segment up (bound from a baseline measured in this test), and every exposure
    is delivered once Segment is back."""
    provider = make_provider(client_options={"upload_interval": 0.01, "timeout": 30})
    client = in_memory_client({"checkout": experiment_flag(experimentKey="exp-of-1")})
    client.add_hooks([ExposureHook(provider)])

    def evaluate(tag: str, n: int) -> tuple[float, float]:
        """(total, slowest) seconds for n evaluations by new users."""
        slowest, started = 0.0, time.perf_counter()
        for i in range(n):
            one = time.perf_counter()
            client.get_string_value(
                "checkout", "off", EvaluationContext(f"{tag}-{i:05d}", {"device_id": "d"})
            )
            slowest = max(slowest, time.perf_counter() - one)
        return time.perf_counter() - started, slowest

    evaluate("warm", 50)
    assert provider.flush(10) and collector.wait_for(50)
    baseline, _ = evaluate("up", 300)
    collector.hang(count=None)
    sent_before = collector.requests
    hanging, slowest = evaluate("down", 300)
    # The Segment client did try to send meanwhile: the evaluations ran alongside a hung upload.
    assert wait_until(lambda: collector.requests > sent_before, timeout=10)
    more, slowest_more = evaluate("down-more", 300)
    bound = 5 * baseline + 0.25  # generous for a shared machine; a blocked call would take 30 s
    assert hanging < bound and more < bound, (baseline, hanging, more)
    assert max(slowest, slowest_more) < 1.0
    collector.up()
    assert provider.flush(30)
    assert collector.wait_for(50 + 900, timeout=30)


# -- the provider over a real LocalEvaluationClient ----------------------------------------------------


@pytest.fixture
def local_provider(
    openfeature_api: None, flag_server: FlagConfigServer, make_local_client: Any
) -> Callable[..., tuple[AmplitudeExperimentProvider, Any]]:
    """An AmplitudeExperimentProvider over a LocalEvaluationClient (not started: initialize() does)."""

    def make(domain: str = "amplitude-local", **kwargs: Any) -> tuple[AmplitudeExperimentProvider, Any]:
        from amplitude_experiment import LocalEvaluationClient, LocalEvaluationConfig

        local = LocalEvaluationClient(
            flag_server.deployment_key,
            LocalEvaluationConfig(server_url=flag_server.url, flag_config_polling_interval_millis=50),
        )
        provider = AmplitudeExperimentProvider(local, watch_interval=0.05, **kwargs)
        set_and_wait(provider, domain)
        return provider, api.get_client(domain)

    return make


def test_local_provider_values_variants_reasons_and_metadata(
    flag_server: FlagConfigServer, local_provider: Any
) -> None:
    """Requirements 2.2.3, 2.2.4, 2.2.5, 2.2.9 and 2.2.10: the value, the Amplitude variant key as
    variant, TARGETING_MATCH / SPLIT / DEFAULT as reason, and the flag's scalar metadata."""
    flag_server.set_flags([*base_flags(), SPLIT_FLAG])
    _, client = local_provider()
    alice = client.get_string_details("checkout-flow", "fallback", ctx(ALICE))
    assert (alice.value, alice.variant, alice.reason, alice.error_code) == (
        "treatment",
        "treatment",
        Reason.TARGETING_MATCH,
        None,
    )
    assert alice.flag_metadata == {
        "deployed": True,
        "evaluationMode": "local",
        "flagType": "experiment",
        "flagVersion": 3,
        "experimentKey": EXPERIMENT_KEY,
        "segmentName": "treatment users",
    }
    assert client.get_string_value("checkout-flow", "fallback", ctx(BOB)) == "control"
    erin = client.get_string_details("checkout-flow", "fallback", ctx(ERIN))
    assert (erin.value, erin.variant, erin.reason) == ("off", "off", Reason.DEFAULT)
    assert erin.flag_metadata["default"] is True
    split = client.get_integer_details("price-test", 0, ctx(CAROL))
    assert (split.value, split.variant, split.reason) == (7, "on", Reason.SPLIT)
    assert split.flag_metadata["experimentKey"] == "exp-price-2"


def test_local_provider_types_and_errors(flag_server: FlagConfigServer, local_provider: Any) -> None:
    """Requirement 2.2.7 and 1.4.10 (1.4.9 before spec 0.8): a flag that does not exist is
    FLAG_NOT_FOUND and a variant of the wrong type TYPE_MISMATCH, each returning the caller's default;
    booleans read "on"/"off", numbers and objects the payload; a default variant with nothing of the
    asked type gives the caller's default with reason DEFAULT."""
    flag_server.set_flags([*base_flags(), SPLIT_FLAG])
    _, client = local_provider()
    assert client.get_boolean_value("quiet-flag", False, ctx(ALICE)) is True  # "on"
    assert client.get_boolean_value("price-test", True, ctx(ERIN)) is True  # "on" (everyone is in)
    assert client.get_float_value("price-test", 0.0, ctx(ERIN)) == 7.0
    assert client.get_object_value("checkout-flow", {}, ctx(ALICE)) == {"color": "green"}
    off = client.get_boolean_details("checkout-flow", True, ctx(ERIN))
    assert (off.value, off.reason, off.error_code) == (False, Reason.DEFAULT, None)  # "off" is False
    number = client.get_integer_details("checkout-flow", 42, ctx(ERIN))
    assert (number.value, number.reason, number.error_code) == (42, Reason.DEFAULT, None)
    mismatch = client.get_boolean_details("checkout-flow", False, ctx(ALICE))  # "treatment"
    assert (mismatch.value, mismatch.error_code) == (False, ErrorCode.TYPE_MISMATCH)
    missing = client.get_string_details("no-such-flag", "fallback", ctx(ALICE))
    assert (missing.value, missing.error_code, missing.reason) == (
        "fallback",
        ErrorCode.FLAG_NOT_FOUND,
        "ERROR",
    )


def test_local_provider_not_ready_until_its_first_fetch_then_ready(openfeature_api: None) -> None:
    """Requirements 2.4.2.1, 5.3.1 and 5.3.2: a local client that cannot fetch its flag configs makes
    initialize() fail (PROVIDER_ERROR handlers run) and evaluations answer PROVIDER_NOT_READY; once
    Amplitude answers, the provider emits PROVIDER_READY and evaluates."""
    from amplitude_experiment import LocalEvaluationClient, LocalEvaluationConfig

    with FlagConfigServer("server-test-deployment-1") as probe:
        port = int(probe.url.rsplit(":", 1)[1])  # a port where nothing listens once the probe stops
    local = LocalEvaluationClient(
        "server-test-deployment-1",
        LocalEvaluationConfig(server_url=f"http://127.0.0.1:{port}", flag_config_polling_interval_millis=50),
    )
    provider = AmplitudeExperimentProvider(local, watch_interval=0.05)
    set_and_wait(provider, "not-ready")
    client = api.get_client("not-ready")
    errored, ready = threading.Event(), threading.Event()
    client.add_handler(ProviderEvent.PROVIDER_ERROR, lambda details: errored.set())  # runs at once
    client.add_handler(ProviderEvent.PROVIDER_READY, lambda details: ready.set())
    assert errored.wait(10)
    assert client.get_provider_status() == ProviderStatus.ERROR
    early = client.get_string_details("checkout-flow", "fallback", ctx(ALICE))
    assert (early.value, early.error_code) == ("fallback", ErrorCode.PROVIDER_NOT_READY)
    assert not ready.is_set()

    with FlagConfigServer("server-test-deployment-1", base_flags(), port=port):
        assert ready.wait(10)  # the provider's watch started the client once Amplitude answered
        assert client.get_provider_status() == ProviderStatus.READY
        assert client.get_string_value("checkout-flow", "fallback", ctx(ALICE)) == "treatment"
        assert provider.stats()["errors"]["PROVIDER_NOT_READY"] == 1
        api.clear_providers()  # shut the provider (and its client) down while the server is up


def test_local_provider_emits_configuration_changed(
    flag_server: FlagConfigServer, local_provider: Any
) -> None:
    """Requirements 5.1.1 and 5.1.2: the provider signals PROVIDER_CONFIGURATION_CHANGED, naming the
    changed flags, when Amplitude serves new flag configs, and the client's handlers run."""
    provider, client = local_provider()
    changes: list[EventDetails] = []
    changed = threading.Event()

    def on_change(details: EventDetails) -> None:
        changes.append(details)
        changed.set()

    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    flag_server.set_flags(base_flags(version=4, treatment=("bob-00002",), control=("alice-0001",)))
    assert changed.wait(10)
    assert changes[0].flags_changed == ["checkout-flow"]
    assert wait_until(lambda: client.get_string_value("checkout-flow", "x", ctx(ALICE)) == "control")
    assert provider.stats()["config_changes"] == len(changes)


def test_provider_and_hook_end_to_end_and_amplitude_tracks_nothing(
    collector: SegmentCollector, make_provider: Any, flag_server: FlagConfigServer, local_provider: Any
) -> None:
    """Requirement 4.4.1 (hooks registered on the API) with 2.2.9 (flag metadata): through our provider,
    the hook sends treatment/control exposures, an unset for the default and nothing for a
    trackExposure-false flag; neither Amplitude's SDK nor its servers are asked to track anything."""
    segment = make_provider()
    api.add_hooks([ExposureHook(segment)])
    _, client = local_provider()
    for user in (ALICE, BOB, ERIN):
        client.get_string_value("checkout-flow", "fallback", ctx(user))
        client.get_string_value("checkout-flow", "fallback", ctx(user))  # a repeat
        client.get_boolean_value("quiet-flag", False, ctx(user))
    assert segment.flush(10)

    events = by_user(collector)
    assert {uid: m["properties"].get("variant") for uid, m in events.items()} == {
        ALICE.user_id: "treatment",
        BOB.user_id: "control",
        ERIN.user_id: None,  # the default variant: an unset
    }
    assert all(m["properties"]["experiment_key"] == EXPERIMENT_KEY for m in events.values())
    # The local client only ever fetched flag configs: no evaluation call, no Amplitude event API.
    assert {r.path for r in flag_server.requests()} == {FLAGS_PATH}


def test_tracking_api_sends_a_segment_track_event(
    collector: SegmentCollector, make_provider: Any, local_provider: Any
) -> None:
    """Condition 2.7.1 (provider tracking): client.track(name, context, details) reaches Segment as
    track(name, properties) through the tracking provider's Segment client, for the context's user;
    without a tracking provider it is counted as dropped."""
    segment: SegmentExposureTrackingProvider = make_provider()
    provider, client = local_provider(tracking_provider=segment)
    client.track("Order Completed", ctx(ALICE), TrackingEventDetails(value=19.5, attributes={"plan": "pro"}))
    assert segment.flush(10)
    [event] = collector.events("Order Completed")
    assert (event["userId"], event["anonymousId"]) == (ALICE.user_id, ALICE.device_id)
    assert event["properties"] == {"plan": "pro", "value": 19.5}
    assert provider.stats()["tracking_events_sent"] == 1

    untracked, other = local_provider(domain="untracked")
    other.track("Order Completed", ctx(BOB))
    assert untracked.stats()["tracking_events_dropped"] == 1
    assert collector.events("$exposure") == []  # tracking sends no exposure either


# -- the provider over a real RemoteEvaluationClient ---------------------------------------------------


def test_remote_provider_evaluates_and_asks_amplitude_to_track_nothing(
    openfeature_api: None, flag_server: FlagConfigServer, remote_client: Any
) -> None:
    """Requirements 2.2.3, 2.2.4, 2.2.5 and 2.2.7 over remote evaluation: the same values, variants and
    reasons as local evaluation, FLAG_NOT_FOUND for an unknown flag, and every fetch carries Amplitude's
    no-track headers (its servers record no assignment or exposure of their own)."""
    set_and_wait(AmplitudeExperimentProvider(remote_client), "amplitude-remote")
    client = api.get_client("amplitude-remote")
    alice = client.get_string_details("checkout-flow", "fallback", ctx(ALICE))
    assert (alice.value, alice.variant, alice.reason) == ("treatment", "treatment", Reason.TARGETING_MATCH)
    assert alice.flag_metadata["experimentKey"] == EXPERIMENT_KEY
    erin = client.get_string_details("checkout-flow", "fallback", ctx(ERIN))
    assert (erin.value, erin.reason) == ("off", Reason.DEFAULT)
    missing = client.get_string_details("no-such-flag", "fallback", ctx(ALICE))
    assert missing.error_code == ErrorCode.FLAG_NOT_FOUND

    fetches = flag_server.requests(VARDATA_PATH)
    assert len(fetches) == 3
    for fetch in fetches:
        assert fetch.header("X-Amp-Exp-Track") == "no-track"
        assert fetch.header("X-Amp-Exp-Exposure-Track") == "no-track"
        assert fetch.json()["user_id"] in {ALICE.user_id, ERIN.user_id}


def test_remote_provider_reports_a_failed_fetch_as_an_error(
    openfeature_api: None, flag_server: FlagConfigServer, remote_client: Any
) -> None:
    """Requirement 2.2.7: a fetch that fails is an error (GENERAL) with the caller's default, never a
    silent "flag not found"; the next fetch evaluates again."""
    set_and_wait(AmplitudeExperimentProvider(remote_client), "amplitude-remote")
    client = api.get_client("amplitude-remote")
    flag_server.fail(500, count=10, path=VARDATA_PATH)
    failed = client.get_string_details("checkout-flow", "fallback", ctx(ALICE))
    assert (failed.value, failed.error_code) == ("fallback", ErrorCode.GENERAL)
    flag_server.clear_requests()
    assert wait_until(lambda: client.get_string_value("checkout-flow", "fallback", ctx(ALICE)) == "treatment")
