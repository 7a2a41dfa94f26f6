"""Fixtures for the Experiment-client tests: a local flag server and real SDK clients pointed at it.

``tests/conftest.py`` loads these with ``pytest_plugins``; the collector and providers come from it too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from amplitude_experiment import (
    LocalEvaluationClient,
    LocalEvaluationConfig,
    RemoteEvaluationClient,
    RemoteEvaluationConfig,
    User,
)

from segment_exposure import FlagConfigServer, SegmentCollector

EXPERIMENT_KEY = "exp-checkout-1"

ALICE = User(user_id="alice-0001", device_id="device-alice-1", ip_address="203.0.113.7", country="US")
BOB = User(user_id="bob-00002", device_id="device-bob-2", language="de-DE")
CAROL = User(user_id="carol-0003", device_id="device-carol-3")
ERIN = User(user_id="erin-00005", device_id="device-erin-5")  # in no segment: the default variant


def _is_user(variant: str, *user_ids: str) -> dict[str, Any]:
    return {
        "conditions": [[{"op": "is", "selector": ["context", "user", "user_id"], "values": list(user_ids)}]],
        "metadata": {"segmentName": f"{variant} users"},
        "variant": variant,
    }


def checkout_flag(
    treatment: tuple[str, ...] = ("alice-0001", "carol-0003"),
    control: tuple[str, ...] = ("bob-00002",),
    *,
    version: int = 3,
    experiment_key: str = EXPERIMENT_KEY,
) -> dict[str, Any]:
    """An experiment with explicit assignments (so tests know each user's variant) and a default "off"."""
    return {
        "key": "checkout-flow",
        "metadata": {
            "deployed": True,
            "evaluationMode": "local",
            "flagType": "experiment",
            "flagVersion": version,
            "experimentKey": experiment_key,
        },
        "segments": [
            _is_user("treatment", *treatment),
            _is_user("control", *control),
            {"metadata": {"segmentName": "All Other Users"}, "variant": "off"},
        ],
        "variants": {
            "off": {"key": "off", "metadata": {"default": True}},
            "control": {"key": "control", "value": "control"},
            "treatment": {"key": "treatment", "value": "treatment", "payload": {"color": "green"}},
        },
    }


QUIET_FLAG: dict[str, Any] = {
    "key": "quiet-flag",
    "metadata": {
        "deployed": True,
        "evaluationMode": "local",
        "flagType": "release",
        "flagVersion": 1,
        "trackExposure": False,
    },
    "segments": [{"metadata": {"segmentName": "All Other Users"}, "variant": "on"}],
    "variants": {"off": {"key": "off", "metadata": {"default": True}}, "on": {"key": "on", "value": "on"}},
}

# A variant without a key: the exposure's variant is its value.
VALUE_ONLY_FLAG: dict[str, Any] = {
    "key": "value-only",
    "metadata": {"deployed": True, "evaluationMode": "local", "flagType": "release", "flagVersion": 4},
    "segments": [{"metadata": {"segmentName": "All Other Users"}, "variant": "enabled"}],
    "variants": {"enabled": {"value": "enabled-value"}},
}

# Two flags that depend on each other: evaluating either one makes the SDK raise CycleException.
CYCLE_FLAGS: list[dict[str, Any]] = [
    {
        "key": key,
        "metadata": {"deployed": True, "evaluationMode": "local", "flagType": "release", "flagVersion": 1},
        "dependencies": [other],
        "segments": [{"variant": "on"}],
        "variants": {"on": {"key": "on", "value": "on"}},
    }
    for key, other in (("cycle-a", "cycle-b"), ("cycle-b", "cycle-a"))
]


def base_flags(**checkout: Any) -> list[dict[str, Any]]:
    """The flags every test starts from: checkout-flow, quiet-flag and value-only."""
    return [checkout_flag(**checkout), copy.deepcopy(QUIET_FLAG), copy.deepcopy(VALUE_ONLY_FLAG)]


@pytest.fixture
def flag_server() -> Iterator[FlagConfigServer]:
    with FlagConfigServer("server-test-deployment-1", base_flags()) as server:
        yield server


@pytest.fixture
def make_local_client(flag_server: FlagConfigServer) -> Iterator[Callable[..., Any]]:
    """Started ``LocalEvaluationClient``s on ``flag_server``, stopped at the end of the test."""
    made: list[Any] = []

    def make(**config: Any) -> Any:
        config.setdefault("flag_config_polling_interval_millis", 50)
        client = LocalEvaluationClient(
            flag_server.deployment_key, LocalEvaluationConfig(server_url=flag_server.url, **config)
        )
        client.start()
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()


@pytest.fixture
def remote_client(flag_server: FlagConfigServer) -> Iterator[Any]:
    client = RemoteEvaluationClient(
        flag_server.deployment_key, RemoteEvaluationConfig(server_url=flag_server.url)
    )
    yield client
    client.close()


def by_user(collector: SegmentCollector, flag_key: str | None = None) -> dict[str, dict[str, Any]]:
    """``$exposure`` events at the collector by userId (one each expected), optionally for one flag."""
    events = [m for m in collector.events() if flag_key is None or m["properties"]["flag_key"] == flag_key]
    result = {m["userId"]: m for m in events}
    assert len(result) == len(events), "more than one exposure for a user"
    return result


def timestamp(message: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(message["timestamp"])
