"""ExposureTrackingClient around a real LocalEvaluationClient, delivering through Segment to the collector."""

from __future__ import annotations

import logging
import sys
import threading
from collections import Counter
from typing import Any

import pytest
from amplitude_experiment import User, Variant

from segment_exposure import ExposureTrackingClient, FlagConfigServer, SegmentCollector, bind_user, demo_flags
from segment_exposure.emulators.flag_server import FLAGS_PATH
from segment_exposure.tracking.message_id import MESSAGE_ID_PREFIX

from .conftest import wait_until
from .experiment_fixtures import (
    ALICE,
    BOB,
    CAROL,
    CYCLE_FLAGS,
    ERIN,
    EXPERIMENT_KEY,
    base_flags,
    by_user,
    timestamp,
)


def _switch_flags(server: FlagConfigServer, client: Any, flags: list[dict[str, Any]]) -> None:
    """Serve ``flags`` and wait until the local client evaluates checkout-flow at their version."""
    [version] = [f["metadata"]["flagVersion"] for f in flags if f["key"] == "checkout-flow"]
    generation = server.set_flags(flags)
    assert server.wait_for_generation_served(generation, timeout=10)

    def loaded() -> bool:
        variant = client.evaluate_v2(User(user_id="probe-00001"), {"checkout-flow"})["checkout-flow"]
        return bool(variant.metadata["flagVersion"] == version)

    assert wait_until(loaded, timeout=10)


def test_treatment_control_and_default_field_by_field(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any
) -> None:
    experiment = ExposureTrackingClient(make_local_client(), make_provider())
    got = {u.user_id: experiment.variant(u, "checkout-flow") for u in (ALICE, BOB, CAROL, ERIN)}
    assert {k: v.key for k, v in got.items()} == {
        "alice-0001": "treatment",
        "bob-00002": "control",
        "carol-0003": "treatment",
        "erin-00005": "off",
    }
    assert got["alice-0001"].value == "treatment" and got["alice-0001"].payload == {"color": "green"}
    assert got["erin-00005"].metadata["default"] is True
    assert experiment.provider.flush(10)

    events = by_user(collector)
    assert set(events) == {"alice-0001", "bob-00002", "carol-0003", "erin-00005"}
    for user, variant in ((ALICE, "treatment"), (BOB, "control"), (CAROL, "treatment")):
        msg = events[user.user_id]
        assert msg["type"] == "track" and msg["event"] == "$exposure"
        assert msg["anonymousId"] == user.device_id
        assert msg["properties"] == {
            "flag_key": "checkout-flow",
            "variant": variant,
            "experiment_key": EXPERIMENT_KEY,
        }
        assert msg["messageId"].startswith(MESSAGE_ID_PREFIX)
        assert timestamp(msg).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    # The default variant is an unset: no variant at all, so the user leaves the experiment.
    assert events["erin-00005"]["properties"] == {
        "flag_key": "checkout-flow",
        "experiment_key": EXPERIMENT_KEY,
    }
    assert events["erin-00005"]["anonymousId"] == "device-erin-5"
    # The Segment context comes from the Experiment user.
    assert events["alice-0001"]["context"]["ip"] == "203.0.113.7"
    assert events["alice-0001"]["context"]["location"] == {"country": "US"}
    assert events["bob-00002"]["context"]["locale"] == "de-DE"
    assert len({m["messageId"] for m in events.values()}) == 4

    stats = experiment.stats()
    assert (stats["evaluations"], stats["tracked"], stats["tracked_unset"], stats["errors"]) == (4, 4, 1, 0)


def test_variant_value_is_used_only_without_a_key(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any
) -> None:
    experiment = ExposureTrackingClient(make_local_client(), make_provider())
    variant = experiment.variant(ALICE, "value-only")
    assert (variant.key, variant.value) == (None, "enabled-value")
    assert experiment.provider.flush(10)
    [msg] = collector.events()
    assert msg["properties"] == {"flag_key": "value-only", "variant": "enabled-value"}  # no experiment key


def test_default_variant_skipped_when_configured(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any
) -> None:
    experiment = ExposureTrackingClient(make_local_client(), make_provider(), track_default_variants=False)
    assert experiment.variant(ERIN, "checkout-flow").key == "off"  # still returned
    assert experiment.exposure(ERIN, "checkout-flow") is False
    experiment.variant(ALICE, "checkout-flow")
    assert experiment.provider.flush(10)
    assert list(by_user(collector)) == ["alice-0001"]
    assert experiment.stats()["suppressed"]["default_variant"] == 2


def test_default_variant_with_inline_fallback_returns_fallback_and_still_unsets(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any
) -> None:
    experiment = ExposureTrackingClient(make_local_client(), make_provider())
    variant = experiment.variant(ERIN, "checkout-flow", fallback="control")
    assert (variant.key, variant.value) == ("control", "control")  # as Amplitude's client SDKs do
    assert experiment.provider.flush(10)
    [msg] = collector.events()
    assert msg["properties"] == {"flag_key": "checkout-flow", "experiment_key": EXPERIMENT_KEY}


def test_fallback_for_a_missing_flag_is_never_tracked(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any
) -> None:
    experiment = ExposureTrackingClient(make_local_client(), make_provider())
    assert experiment.variant(ALICE, "no-such-flag").__dict__ == Variant().__dict__
    assert experiment.variant(ALICE, "no-such-flag", fallback="blue").key == "blue"
    mine = Variant(key="mine", value="mine")
    assert experiment.variant(ALICE, "no-such-flag", fallback=mine) is mine
    assert experiment.exposure(ALICE, "no-such-flag") is False
    experiment.variant(BOB, "checkout-flow")  # proves delivery works: only this one arrives
    assert experiment.provider.flush(10)
    assert [m["properties"]["flag_key"] for m in collector.events()] == ["checkout-flow"]
    stats = experiment.stats()
    assert (stats["fallbacks"], stats["suppressed"]["fallback"], stats["errors"]) == (3, 4, 0)


@pytest.mark.slow
def test_client_fallback_variant_as_in_the_js_client(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any
) -> None:
    experiment = ExposureTrackingClient(
        make_local_client(), make_provider(), fallback_variant={"key": "safe", "value": "safe-value"}
    )
    missing = experiment.variant(ALICE, "no-such-flag")
    assert (missing.key, missing.value) == ("safe", "safe-value")  # not tracked
    assert experiment.variant(ALICE, "no-such-flag", fallback="inline").key == "inline"  # the call's first
    assert experiment.variant(ALICE, "checkout-flow").key == "treatment"  # a real variant beats both
    assert experiment.variant(ERIN, "checkout-flow").key == "safe"  # in place of the default "off"...
    assert experiment.exposure(ERIN, "checkout-flow", fallback="inline") is True  # ...tracked as one unset
    assert experiment.provider.flush(10)
    events = by_user(collector)
    assert set(events) == {"alice-0001", "erin-00005"}
    assert events["erin-00005"]["properties"] == {
        "flag_key": "checkout-flow",
        "experiment_key": EXPERIMENT_KEY,
    }
    assert experiment.stats()["suppressed"]["fallback"] == 2


def test_empty_or_bad_fallbacks(make_provider: Any, make_local_client: Any) -> None:
    client, provider = make_local_client(), make_provider()
    assert ExposureTrackingClient(client, provider, fallback_variant=Variant()).fallback_variant is None
    assert ExposureTrackingClient(client, provider, fallback_variant={}).fallback_variant is None
    with pytest.raises(TypeError, match="fallback must be"):
        ExposureTrackingClient(client, provider, fallback_variant=42)
    experiment = ExposureTrackingClient(client, provider)
    with pytest.raises(TypeError, match="fallback must be"):
        experiment.variant(ALICE, "checkout-flow", fallback=3.5)
    with pytest.raises(ValueError, match="colour"):
        experiment.exposure(ALICE, "checkout-flow", fallback={"key": "k", "colour": "red"})
    assert provider.stats()["tracked"] == 0  # a bad call tracks nothing


def test_holdout_groups_are_exposures_mutual_exclusion_groups_are_not(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any, flag_server: FlagConfigServer
) -> None:
    def group(key: str, flag_type: str) -> dict[str, Any]:
        return {
            "key": key,
            "metadata": {
                "deployed": True,
                "evaluationMode": "local",
                "flagType": flag_type,
                "flagVersion": 1,
            },
            "segments": [{"variant": "in"}],
            "variants": {"in": {"key": "in", "value": "in"}},
        }

    flag_server.set_flags(
        [*base_flags(), group("holdout", "holdout-group"), group("mutex", "mutual-exclusion-group")]
    )
    experiment = ExposureTrackingClient(make_local_client(), make_provider())
    assert experiment.variant(ALICE, "holdout").key == "in"
    assert experiment.variant(ALICE, "mutex").key == "in"  # returned, not tracked
    assert experiment.provider.flush(10)
    [event] = collector.events()
    assert event["properties"] == {"flag_key": "holdout", "variant": "in"}
    assert experiment.stats()["suppressed"]["group_flag"] == 1


def test_evaluation_error_returns_fallback_logs_and_counts(
    collector: SegmentCollector,
    make_provider: Any,
    make_local_client: Any,
    flag_server: FlagConfigServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flag_server.set_flags(base_flags() + CYCLE_FLAGS)
    experiment = ExposureTrackingClient(make_local_client(), make_provider())
    with caplog.at_level(logging.WARNING, logger="segment_exposure"):
        variant = experiment.variant(ALICE, "cycle-a", fallback="safe")  # the SDK raises CycleException
        assert experiment.all(ALICE) == {}  # evaluating every flag meets the cycle too
    assert variant.key == "safe"
    assert "cycle-a" in caplog.text and "CycleException" in caplog.text
    # Local evaluation evaluates only the requested flag: the cycle elsewhere does not break it.
    assert experiment.variant(ALICE, "checkout-flow").key == "treatment"
    assert experiment.provider.flush(10)
    assert [m["properties"]["flag_key"] for m in collector.events()] == ["checkout-flow"]
    stats = experiment.stats()
    assert (stats["errors"], stats["fallbacks"], stats["tracked"]) == (2, 1, 1)


def test_track_exposure_false_is_never_tracked(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any
) -> None:
    experiment = ExposureTrackingClient(make_local_client(), make_provider())
    assert experiment.variant(ALICE, "quiet-flag").key == "on"
    assert experiment.exposure(BOB, "quiet-flag") is False
    experiment.variant(CAROL, "checkout-flow")
    assert experiment.provider.flush(10)
    assert [m["properties"]["flag_key"] for m in collector.events()] == ["checkout-flow"]
    assert experiment.stats()["suppressed"]["track_exposure_false"] == 2


def test_flag_change_mid_test_a_b_a(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any, flag_server: FlagConfigServer
) -> None:
    client = make_local_client()
    experiment = ExposureTrackingClient(client, make_provider())
    assert experiment.variant(ALICE, "checkout-flow").key == "treatment"  # A
    _switch_flags(flag_server, client, base_flags(treatment=(), control=("alice-0001",), version=4))
    assert experiment.variant(ALICE, "checkout-flow").key == "control"  # B
    assert experiment.variant(ALICE, "checkout-flow").key == "control"  # a repeat: deduplicated
    _switch_flags(flag_server, client, base_flags(version=5))
    assert experiment.variant(ALICE, "checkout-flow").key == "treatment"  # A again
    assert experiment.provider.flush(10)

    events = sorted(collector.events(), key=timestamp)
    assert [m["properties"]["variant"] for m in events] == ["treatment", "control", "treatment"]
    assert len({m["messageId"] for m in events}) == 3
    assert len({timestamp(m) for m in events}) == 3
    assert events[-1]["properties"]["variant"] == "treatment"  # Amplitude ends on A
    assert experiment.provider.stats()["deduplicated"] == 1


def test_experiment_key_follows_the_flag(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any, flag_server: FlagConfigServer
) -> None:
    client = make_local_client()
    experiment = ExposureTrackingClient(client, make_provider())
    experiment.variant(ALICE, "checkout-flow")
    _switch_flags(flag_server, client, base_flags(experiment_key="exp-checkout-2", version=4))
    experiment.variant(ALICE, "checkout-flow")  # same variant, new experiment run: a new exposure
    assert experiment.provider.flush(10)
    events = sorted(collector.events(), key=timestamp)
    assert [m["properties"]["experiment_key"] for m in events] == ["exp-checkout-1", "exp-checkout-2"]


def test_request_scope_evaluates_once_and_keeps_one_variant(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any, flag_server: FlagConfigServer
) -> None:
    client = make_local_client()
    experiment = ExposureTrackingClient(client, make_provider())
    with bind_user(ALICE):
        assert experiment.variant(None, "checkout-flow").key == "treatment"  # None: the bound user
        # The flag changes while the request runs: the request keeps what it saw.
        _switch_flags(flag_server, client, base_flags(treatment=(), control=("alice-0001",), version=4))
        assert experiment.variant(ALICE, "checkout-flow").key == "treatment"
        assert experiment.exposure(None, "checkout-flow") is True  # a repeat, deduplicated
        assert experiment.all(None)["checkout-flow"].key == "treatment"
    with bind_user(ALICE):
        assert experiment.variant(None, "checkout-flow").key == "control"  # a new request
    assert experiment.provider.flush(10)
    assert [m["properties"]["variant"] for m in sorted(collector.events(), key=timestamp)] == [
        "treatment",
        "control",
    ]
    stats = experiment.stats()
    assert stats["cache_hits"] == 2  # variant() and exposure() reused the first evaluation
    assert experiment.provider.stats()["deduplicated"] == 2  # and their exposures were repeats


def test_automatic_tracking_off_tracks_only_explicit_exposures(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any
) -> None:
    experiment = ExposureTrackingClient(
        make_local_client(), make_provider(), automatic_exposure_tracking=False
    )
    assert experiment.variant(ALICE, "checkout-flow").key == "treatment"
    assert experiment.variant(BOB, "checkout-flow").key == "control"
    assert set(experiment.all(CAROL)) == {"checkout-flow", "quiet-flag", "value-only"}
    assert experiment.exposure(BOB, "checkout-flow") is True
    assert experiment.provider.flush(10)
    assert list(by_user(collector)) == ["bob-00002"]


def test_user_mapping_and_the_callers_user_is_not_mutated(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any
) -> None:
    experiment = ExposureTrackingClient(make_local_client(), make_provider())
    assert (
        experiment.variant({"user_id": "bob-00002", "device_id": "dev-b"}, "checkout-flow").key == "control"
    )
    user = User(user_id="carol-0003")
    before = dict(user.__dict__)
    experiment.variant(user, "checkout-flow")
    assert user.__dict__ == before
    with pytest.raises(TypeError):
        experiment.variant(ALICE, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        experiment.variant(object(), "checkout-flow")
    assert experiment.provider.flush(10)
    assert set(by_user(collector)) == {"bob-00002", "carol-0003"}


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch, make_provider: Any) -> None:
    monkeypatch.setitem(sys.modules, "amplitude_experiment", None)
    with pytest.raises(ImportError, match=r"pip install 'segment-exposure\[experiment\]'"):
        ExposureTrackingClient(object(), make_provider())


def test_wrong_client_type_is_rejected(make_provider: Any) -> None:
    with pytest.raises(TypeError, match="LocalEvaluationClient or RemoteEvaluationClient"):
        ExposureTrackingClient(object(), make_provider())


def test_demo_flags_work_with_the_real_local_client(
    make_local_client: Any, flag_server: FlagConfigServer
) -> None:
    flag_server.set_flags(demo_flags())
    client = make_local_client()
    assert flag_server.requests(FLAGS_PATH)[-1].generation == flag_server.generation
    seen: Counter[tuple[str, str]] = Counter()
    for i in range(200):
        user = User(user_id=f"user-{i:05d}", device_id=f"device-{i:05d}", country="US" if i % 2 else "FR")
        for flag_key, variant in client.evaluate_v2(user).items():
            seen[flag_key, variant.key] += 1
    keys = {key for key, _ in seen}
    assert keys == {"checkout-flow", "search-ranking", "new-nav", "pricing-banner"}
    for flag in ("checkout-flow", "search-ranking", "new-nav"):
        assert seen[flag, "off"] > 0  # the default variant is reachable
    for variant in ("control", "treatment"):
        assert seen["checkout-flow", variant] > 20  # bucketed by user_id with allocations
    assert seen["pricing-banner", "on"] == 200


@pytest.mark.slow
def test_many_threads_many_users_exact_counts(
    collector: SegmentCollector, make_provider: Any, make_local_client: Any, flag_server: FlagConfigServer
) -> None:
    flag_server.set_flags(demo_flags())
    experiment = ExposureTrackingClient(make_local_client(), make_provider())
    users = [User(user_id=f"user-{i:05d}", device_id=f"device-{i:05d}") for i in range(400)]
    flags = ("checkout-flow", "new-nav", "pricing-banner")  # pricing-banner: trackExposure false
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            start.wait()
            for _repeat in range(2):
                for user in users[worker::8]:
                    for flag_key in flags:
                        experiment.variant(user, flag_key)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert experiment.provider.flush(20)

    events = collector.events()
    assert len(events) == len(users) * 2  # checkout-flow and new-nav, once per user
    got = {(m["userId"], m["properties"]["flag_key"]): m["properties"].get("variant") for m in events}
    for user in users:
        expected = experiment.all(user)
        for flag_key in ("checkout-flow", "new-nav"):
            variant = expected[flag_key]
            assert got[user.user_id, flag_key] == (None if variant.metadata.get("default") else variant.key)
    stats = experiment.stats()
    calls = len(users) * len(flags) * 2
    assert stats["evaluations"] == calls + len(users)  # plus the all() calls above
    assert stats["tracked"] == len(users) * 2 * 2
    assert stats["suppressed"]["track_exposure_false"] == len(users) * 2
    provider_stats = experiment.provider.stats()
    assert (provider_stats["tracked"], provider_stats["deduplicated"]) == (len(users) * 2, len(users) * 2)
    assert provider_stats["delivered"] == len(users) * 2
