"""ExposureTrackingClient held call by call against the real Amplitude Experiment JS client.

The JS client (``@amplitude/experiment-js-client``, run by ``tests/js/experiment-client/harness.mjs``
under Node) and ``ExposureTrackingClient`` around a real ``RemoteEvaluationClient`` fetch from the same
local ``/sdk/v2/vardata`` and run the same scripted calls. For every call the test compares what was
returned (key and value), which exposures each decided to track (before dedupe) and which were sent on
(after dedupe: the JS client's ``exposureTrackingProvider`` calls; the real provider's non-repeats,
which must also be exactly what reaches the local Segment collector). A call may differ only where it
names one of the ``DEVIATIONS`` below, and then it must differ, in exactly the way the scenario says.
The docs' "Differences" page renders the same table (``segment_exposure/data/deviations.json``).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from amplitude_experiment import RemoteEvaluationClient, RemoteEvaluationConfig

from segment_exposure import (
    Exposure,
    ExposureTrackingClient,
    FlagConfigServer,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    bind_user,
)
from segment_exposure.emulators.flag_server import VARDATA_PATH

from .experiment_fixtures import EXPERIMENT_KEY, QUIET_FLAG, VALUE_ONLY_FLAG, checkout_flag
from .prerequisites import require_npm_dir

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
HARNESS_DIR = ROOT / "tests" / "js" / "experiment-client"
HARNESS = HARNESS_DIR / "harness.mjs"
JS_CLIENT = HARNESS_DIR / "node_modules" / "@amplitude" / "experiment-js-client" / "package.json"

# The one table of deliberate deviations from the JS client: name -> (what we do, why). The docs'
# "Differences" page is generated from the same file.
DEVIATIONS: dict[str, tuple[str, str]] = {
    row["name"]: (row["ours"], row["why"])
    for row in json.loads(
        resources.files("segment_exposure").joinpath("data/deviations.json").read_text("utf-8")
    )["js_client"]
}

ALICE = {"user_id": "alice-0001", "device_id": "device-alice-1"}
BOB = {"user_id": "bob-00002", "device_id": "device-bob-2"}
ERIN = {"user_id": "erin-00005", "device_id": "device-erin-5"}  # in no segment: default variants

Triple = tuple[str, "str | None", "str | None"]


def _flag(
    key: str,
    flag_type: str,
    variants: dict[str, Any],
    *,
    alice: str,
    others: str = "off",
    **metadata: Any,
) -> dict[str, Any]:
    """A flag serving ``alice`` one variant and everyone else another (by default its default "off")."""
    return {
        "key": key,
        "metadata": {
            "deployed": True,
            "evaluationMode": "remote",
            "flagType": flag_type,
            "flagVersion": 1,
            **metadata,
        },
        "segments": [
            {
                "conditions": [
                    [{"op": "is", "selector": ["context", "user", "user_id"], "values": [ALICE["user_id"]]}]
                ],
                "variant": alice,
            },
            {"metadata": {"segmentName": "All Other Users"}, "variant": others},
        ],
        "variants": {"off": {"key": "off", "metadata": {"default": True}}, **variants},
    }


ON = {"on": {"key": "on", "value": "on"}}
RELEASE = _flag("new-nav", "release", ON, alice="on")
QUIET_DEFAULT = _flag("quiet-default", "release", ON, alice="on", trackExposure=False)
UNDEPLOYED = _flag("undeployed", "experiment", ON, alice="on", deployed=False, experimentKey="exp-undeployed")
JSON_KEYED = _flag(
    "json-keyed", "release", {"blob": {"key": "blob", "value": {"color": "green", "n": 2}}}, alice="blob"
)
JSON_KEYLESS = _flag("json-keyless", "release", {"blob": {"value": {"color": "green", "n": 2}}}, alice="blob")
# As Amplitude builds them: a "holdout" variant for the held-out share, "on" for everyone else.
HOLDOUT = _flag(
    "holdout-q4", "holdout-group", {"holdout": {"key": "holdout"}, **ON}, alice="holdout", others="on"
)
MUTEX = _flag("mutex-checkout", "mutual-exclusion-group", {"slot-1": {"key": "slot-1"}}, alice="slot-1")
BLOB_TEXT = '{"color":"green","n":2}'
QUIET_FALLBACK = {"key": "quiet", "value": "quiet", "metadata": {"trackExposure": False}}


def flags(*extra: dict[str, Any], **checkout: Any) -> list[dict[str, Any]]:
    return [checkout_flag(**checkout), QUIET_FLAG, VALUE_ONLY_FLAG, *extra]


def E(flag_key: str, variant: str | None = None, experiment_key: str | None = None) -> Triple:
    """An exposure as compared: (flag_key, variant or None for an unset, experiment_key or None)."""
    return (flag_key, variant, experiment_key)


@dataclass(frozen=True)
class Fetch:
    """Serve ``flags`` (when given), then make ``user`` the current user; the JS client fetches now."""

    user: dict[str, str]
    flags: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Call:
    """``variant`` / ``exposure`` / ``all`` for the current user. ``ours``: this package's differing
    fields (returned / decided / sent) under the named deviation."""

    op: str
    flag: str = ""
    fallback: Any = None
    deviation: str | None = None
    ours: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    flags: list[dict[str, Any]]
    steps: tuple[Fetch | Call, ...]
    fallback_variant: Any = None


SCENARIOS = [
    Scenario(
        "experiment-flag",
        flags(),
        (
            Fetch(ALICE),
            Call("variant", "checkout-flow"),
            Call("variant", "checkout-flow"),  # a repeat: decided again, sent once
            Call("exposure", "checkout-flow"),
            Call("all"),
        ),
    ),
    Scenario(
        "default-variant",
        flags(),
        (Fetch(ERIN), Call("variant", "checkout-flow"), Call("exposure", "checkout-flow"), Call("all")),
    ),
    Scenario(
        "default-variant-inline-fallback",
        flags(),
        (
            Fetch(ERIN),
            Call(
                "variant",
                "checkout-flow",
                fallback="control",
                deviation="unset-keeps-experiment-key",
                ours={
                    "decided": [E("checkout-flow", None, EXPERIMENT_KEY)],
                    "sent": [E("checkout-flow", None, EXPERIMENT_KEY)],
                },
            ),
            Call("variant", "checkout-flow"),  # the same unset: both dedupe it
            Call(
                "variant",
                "checkout-flow",
                fallback=QUIET_FALLBACK,
                deviation="served-metadata-wins",
                ours={"decided": [E("checkout-flow", None, EXPERIMENT_KEY)]},
            ),
        ),
    ),
    Scenario(
        "default-variant-client-fallback",
        flags(),
        (
            Fetch(ERIN),
            Call(
                "variant",
                "checkout-flow",
                deviation="unset-keeps-experiment-key",
                ours={
                    "decided": [E("checkout-flow", None, EXPERIMENT_KEY)],
                    "sent": [E("checkout-flow", None, EXPERIMENT_KEY)],
                },
            ),
            Call(
                "exposure",
                "checkout-flow",
                deviation="unset-keeps-experiment-key",
                ours={"decided": [E("checkout-flow", None, EXPERIMENT_KEY)]},
            ),
            Call("variant", "new-nav"),  # no flag, client fallback: nothing tracked
            Fetch(ALICE),
            Call("variant", "checkout-flow"),  # a real variant beats the client fallback
        ),
        fallback_variant="safe",
    ),
    Scenario(
        "track-exposure-false",
        flags(QUIET_DEFAULT),
        (
            Fetch(ALICE),
            Call("variant", "quiet-flag"),
            Call("exposure", "quiet-flag"),
            Call("variant", "quiet-default"),
            Fetch(ERIN),
            Call("variant", "quiet-default"),  # its default, trackExposure: false
            Call(
                "variant",
                "quiet-default",
                fallback="x",
                deviation="served-metadata-wins",
                ours={"decided": [], "sent": []},
            ),
        ),
    ),
    Scenario(
        "value-without-key",
        flags(),
        (Fetch(ALICE), Call("variant", "value-only"), Call("exposure", "value-only")),
    ),
    Scenario(
        "json-value",
        flags(JSON_KEYED, JSON_KEYLESS),
        (
            Fetch(ALICE),
            Call(
                "variant",
                "json-keyed",
                deviation="json-value-as-text",
                ours={"returned": ["blob", BLOB_TEXT]},
            ),
            Call(
                "variant",
                "json-keyless",
                deviation="json-value-as-text",
                ours={
                    "returned": [None, BLOB_TEXT],
                    "decided": [E("json-keyless", BLOB_TEXT)],
                    "sent": [E("json-keyless", BLOB_TEXT)],
                },
            ),
        ),
    ),
    Scenario(
        "missing-flag",
        flags(),
        (
            Fetch(ALICE),
            Call("variant", "no-such-flag"),
            Call("variant", "no-such-flag", fallback="x"),
            Call("variant", "no-such-flag", fallback={"key": "k", "value": "v"}),
            Call("exposure", "no-such-flag"),
        ),
    ),
    Scenario(
        "missing-flag-client-fallback",
        flags(),
        (
            Fetch(ALICE),
            Call("variant", "no-such-flag"),
            Call("variant", "no-such-flag", fallback="inline-wins"),
            Call("exposure", "no-such-flag"),
        ),
        fallback_variant={"key": "safe", "value": "safe-value"},
    ),
    Scenario(
        "deployed-false",
        flags(UNDEPLOYED),
        (Fetch(ALICE), Call("variant", "undeployed"), Fetch(ERIN), Call("variant", "undeployed")),
    ),
    Scenario(
        "release-flag",
        flags(RELEASE),
        (Fetch(ALICE), Call("variant", "new-nav"), Fetch(BOB), Call("variant", "new-nav"), Call("all")),
    ),
    Scenario(
        "a-b-a",
        flags(),
        (
            Fetch(ALICE),
            Call("variant", "checkout-flow"),
            Fetch(ALICE, flags(treatment=(), control=("alice-0001",), version=4)),
            Call("variant", "checkout-flow"),
            Fetch(ALICE, flags(version=5)),
            Call("variant", "checkout-flow"),
            Call("variant", "checkout-flow"),
        ),
    ),
    Scenario(
        "flag-removed",
        flags(),
        (
            Fetch(ALICE),
            Call("variant", "checkout-flow"),
            Fetch(ALICE, [QUIET_FLAG]),
            Call("variant", "checkout-flow"),
            Call("variant", "checkout-flow", fallback="control"),
            Call("exposure", "checkout-flow"),
        ),
    ),
    Scenario(
        "holdout-group",
        flags(HOLDOUT),
        (
            Fetch(ALICE),
            Call("variant", "holdout-q4"),
            Call("exposure", "holdout-q4"),
            Fetch(ERIN),
            Call("variant", "holdout-q4"),
        ),
    ),
    Scenario(
        "mutual-exclusion-group",
        flags(MUTEX),
        (
            Fetch(ALICE),
            Call(
                "variant",
                "mutex-checkout",
                deviation="mutual-exclusion-untracked",
                ours={"decided": [], "sent": []},
            ),
            Call("exposure", "mutex-checkout", deviation="mutual-exclusion-untracked", ours={"decided": []}),
            Call("all"),
        ),
    ),
    Scenario(
        "user-changes",
        flags(),
        (
            Fetch(ALICE),
            Call("variant", "checkout-flow"),
            Fetch(BOB),
            Call("variant", "checkout-flow"),
            Fetch(ALICE),
            Call("variant", "checkout-flow", deviation="dedupe-per-identity", ours={"sent": []}),
            Fetch(ERIN),
            Call("variant", "checkout-flow"),
        ),
    ),
    Scenario(
        "new-experiment-key",
        flags(),
        (
            Fetch(ALICE),
            Call("variant", "checkout-flow"),
            Fetch(ALICE, flags(experiment_key="exp-checkout-2", version=4)),
            Call(
                "variant",
                "checkout-flow",
                deviation="dedupe-includes-experiment-key",
                ours={"sent": [E("checkout-flow", "treatment", "exp-checkout-2")]},
            ),
        ),
    ),
]


# -- the two clients --------------------------------------------------------------------------------


class JSClient:
    """The harness process: one JSON command per line, one answer per line."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [require_npm_dir(HARNESS_DIR), str(HARNESS)],
            cwd=HARNESS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stderr: list[str] = []
        assert self.process.stderr is not None
        stderr = self.process.stderr
        threading.Thread(target=lambda: self._stderr.extend(stderr), daemon=True).start()

    def send(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the JS harness exited: {''.join(self._stderr)}")
        answer: dict[str, Any] = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"the JS harness failed on {command}: {answer['error']}")
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


class Recorder:
    """Passes every exposure to the real provider and notes which it sent on (not a repeat)."""

    def __init__(self, provider: SegmentExposureTrackingProvider) -> None:
        self.provider = provider
        self.decided: list[Triple] = []
        self.sent: list[Triple] = []

    def track(self, exposure: Exposure, user: object = None) -> bool:
        repeats = self.provider.stats()["deduplicated"]
        accepted = self.provider.track(exposure, user)
        triple = E(exposure.flag_key, exposure.variant, exposure.experiment_key)
        self.decided.append(triple)
        if accepted and self.provider.stats()["deduplicated"] == repeats:
            self.sent.append(triple)
        return accepted


def _returned(variant: Any) -> list[Any]:
    if variant is None:
        return [None, None]
    if isinstance(variant, dict):
        return [variant.get("key"), variant.get("value")]
    return [variant.key, variant.value]


def _triples(exposures: list[dict[str, Any]]) -> list[Triple]:
    return [E(e["flag_key"], e["variant"], e["experiment_key"]) for e in exposures]


@pytest.fixture(scope="module")
def js_client() -> Iterator[JSClient]:
    require_npm_dir(HARNESS_DIR)  # installed on first need; else a skip, or a failure under CI
    client = JSClient()
    yield client
    client.close()


def test_every_deviation_is_shown_by_a_scenario() -> None:
    assert DEVIATIONS and all(ours and why for ours, why in DEVIATIONS.values())
    used = {
        step.deviation for s in SCENARIOS for step in s.steps if isinstance(step, Call) and step.deviation
    }
    assert used == set(DEVIATIONS), "every deviation is shown by a scenario, and only those"


@pytest.mark.parametrize("per_request", [False, True], ids=["each-call-fetches", "one-fetch-per-request"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
@pytest.mark.requires("npm:experiment-client")
def test_same_calls_same_exposures_as_the_js_client(
    scenario: Scenario,
    per_request: bool,
    js_client: JSClient,
    collector: SegmentCollector,
    make_provider: Any,
) -> None:
    """``per_request``: each fetch of the JS client starts a request (``bind_user``), in which ours
    fetches once and serves every call from it, as the JS client serves calls from its last fetch."""
    with FlagConfigServer("client-parity-deployment", scenario.flags) as server, ExitStack() as request:
        remote = RemoteEvaluationClient(server.deployment_key, RemoteEvaluationConfig(server_url=server.url))
        recorder = Recorder(make_provider())
        ours = ExposureTrackingClient(remote, recorder, fallback_variant=scenario.fallback_variant)
        new: dict[str, Any] = {"op": "new", "serverUrl": server.url, "deploymentKey": server.deployment_key}
        if scenario.fallback_variant is not None:
            new["fallbackVariant"] = scenario.fallback_variant
        js_client.send(new)
        try:
            user: dict[str, str] = {}
            sent: list[Triple] = []
            for index, step in enumerate(scenario.steps):
                if isinstance(step, Fetch):
                    if step.flags is not None:
                        server.set_flags(step.flags)
                    user = step.user
                    js_client.send({"op": "fetch", "user": user})
                    if per_request:
                        request.close()
                        request.enter_context(bind_user(user))
                    continue
                js = _js_call(js_client, step)
                py = _py_call(ours, recorder, user, step)
                sent += py["sent"]
                where = f"{scenario.name} step {index}: {step.op}({step.flag!r}, fallback={step.fallback!r})"
                if step.deviation is None:
                    assert py == js, where
                else:
                    assert step.deviation in DEVIATIONS
                    assert py != js, f"{where}: listed as {step.deviation} but agrees with the JS client"
                    assert py == {**js, **step.ours}, f"{where} ({step.deviation})"
        finally:
            request.close()
            remote.close()
    if per_request:
        fetches = sum(isinstance(step, Fetch) for step in scenario.steps)
        assert len(server.requests(VARDATA_PATH)) == 2 * fetches  # the JS client's and ours, per request
    # What the provider sent on is exactly what reached Segment, in order.
    assert recorder.provider.flush(10)
    at_segment = [
        E(m["properties"]["flag_key"], m["properties"].get("variant"), m["properties"].get("experiment_key"))
        for m in collector.events()
    ]
    assert at_segment == sent


def _js_call(js_client: JSClient, step: Call) -> dict[str, Any]:
    command: dict[str, Any] = {"op": step.op, "flag": step.flag}
    if step.fallback is not None:
        command["fallback"] = step.fallback
    answer = js_client.send(command)
    returned: Any = answer["returned"]
    if step.op == "all":
        returned = {key: _returned(variant) for key, variant in returned.items()}
    elif step.op == "variant":
        returned = _returned(returned)
    return {"returned": returned, "decided": _triples(answer["decided"]), "sent": _triples(answer["sent"])}


def _py_call(
    ours: ExposureTrackingClient, recorder: Recorder, user: dict[str, str], step: Call
) -> dict[str, Any]:
    recorder.decided.clear()
    recorder.sent.clear()
    returned: Any = None
    if step.op == "variant":
        returned = _returned(ours.variant(user, step.flag, step.fallback))
    elif step.op == "exposure":
        ours.exposure(user, step.flag)
    else:
        returned = {key: _returned(variant) for key, variant in ours.all(user).items()}
    return {"returned": returned, "decided": list(recorder.decided), "sent": list(recorder.sent)}
