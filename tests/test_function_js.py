"""The Segment Function (JavaScript) against the Python implementation it ports.

Translation: every golden vector, and thousands of generated events, give the same Amplitude event or the
same error class and message in both languages. Delivery: for each row of Amplitude's response contract,
the function's ``onBatch`` gives the same per-event statuses as the Python ``on_batch``, against the same
real AmplitudeEmulator, and the same events end up ingested. Node runs ``tests/js/harness.mjs``, which loads
the function into a vm context with Segment's runtime globals.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from segment_exposure import (
    AmplitudeEmulator,
    AmplitudeExposureDestination,
    PermanentError,
    RetryError,
    to_amplitude_event,
)

from .amplitude_cases import segment_event
from .prerequisites import require_node
from .test_segment_parity import ua_derived_fields

# The Segment Function is JavaScript: Node runs it (installed on first need, tests/prerequisites.py).
pytestmark = [pytest.mark.slow, pytest.mark.requires("node")]  # runs Node: outside the fast inner loop

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "js" / "harness.mjs"
FUNCTION = ROOT / "segment_exposure" / "functions" / "amplitude_exposure.js"
VECTOR_DIR = ROOT / "tests" / "vectors" / "translate"
API_KEY = "amp-js-key-7c1f0e9a55"

#: The same fast retry timing on both sides (production timing has its own test).
PY_FAST: dict[str, Any] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "backoff_jitter": 0.01,
    "timeout": (2, 3),
}
JS_FAST: dict[str, Any] = {
    "backoffInitialMs": 10,
    "backoffMaxMs": 50,
    "backoffJitterMs": 10,
    "requestTimeoutMs": 3000,
}

# Reasons that quote the HTTP library's own error text (requests vs. undici) cannot match word for word.
LIBRARY_WORDED = (
    "RetryError: network error talking to Amplitude",
    "RetryError: no answer from Amplitude within",
)


def run_js(
    commands: list[dict[str, Any]],
    *,
    timing: dict[str, Any] | None = None,
    amplitude: str | None = None,
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """Run ``commands`` in one Node process; the function's logs are kept for the failure message."""
    request = {"commands": commands, "timing": timing, "amplitude": amplitude}
    done = subprocess.run(
        [require_node(), str(HARNESS)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"harness failed ({done.returncode}):\n{done.stderr[-3000:]}"
    results: list[dict[str, Any]] = json.loads(done.stdout)["results"]
    return results


def js_settings(options: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Segment settings for translator ``options`` as the Python API spells them (user agents not parsed
    unless ``user_agent_parsing`` is given: the two sides use different parsers, compared separately)."""
    options = options or {}
    return {
        "minIdLength": options.get("min_id_length"),
        "exposureEvents": options.get("exposure_events"),
        "source": options.get("source"),
        "userAgentParsing": options.get("user_agent_parsing", False),
        **extra,
    }


def python_outcome(event: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The Python translator with the Function's settings (by default without user-agent parsing)."""
    try:
        return {"ok": to_amplitude_event(event, **{"user_agent_parsing": False, **options})}
    except PermanentError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


# -- translation ------------------------------------------------------------------------------------------

VECTORS: list[dict[str, Any]] = [
    vector
    for path in sorted(VECTOR_DIR.glob("*.json"))
    for vector in json.loads(path.read_text(encoding="utf-8"))
]


@pytest.fixture(scope="module")
def js_vector_outputs() -> list[dict[str, Any]]:
    cases = [{"event": v["input"], "settings": js_settings(v.get("options"))} for v in VECTORS]
    (result,) = run_js([{"op": "translate", "cases": cases}])
    outputs: list[dict[str, Any]] = result["outputs"]
    return outputs


def test_all_vector_files_are_used() -> None:
    assert len(VECTORS) >= 125
    assert len({v["name"] for v in VECTORS}) == len(VECTORS), "vector names are unique"


@pytest.mark.parametrize("index", range(len(VECTORS)), ids=[v["name"] for v in VECTORS])
def test_golden_vector_identical_in_js(index: int, js_vector_outputs: list[dict[str, Any]]) -> None:
    vector = VECTORS[index]
    python = python_outcome(vector["input"], vector.get("options") or {})
    js = js_vector_outputs[index]
    assert js == python, "same Amplitude event, or same error class and message"
    expect = vector["expect"]
    if "error" in expect:
        assert js["error"] == expect["error"]
        for part in expect.get("message_contains", []):
            assert part in js["message"]
    else:
        # Parsing is off on both sides here; the parsed fields are held to Segment's in the parity test.
        derived = ua_derived_fields(vector["input"])
        assert js["ok"] == {k: v for k, v in expect.items() if k not in derived}


def test_vectors_with_user_agent_parsing_differ_only_in_parsed_fields() -> None:
    """With parsing on, the Function (Segment's parser) and Python (ua-parser-py) agree on the rest."""
    cases = [
        {"event": v["input"], "settings": js_settings(v.get("options"), userAgentParsing=True)}
        for v in VECTORS
    ]
    (result,) = run_js([{"op": "translate", "cases": cases}])
    parsed_events = 0
    for vector, js in zip(VECTORS, result["outputs"], strict=True):
        python = python_outcome(
            vector["input"], {**(vector.get("options") or {}), "user_agent_parsing": True}
        )
        assert ("ok" in js) == ("ok" in python), vector["name"]
        if "ok" not in js:
            assert js == python
            continue
        derived = set(ua_derived_fields(vector["input"]))
        parsed_events += bool(derived & set(js["ok"]))
        assert {k: v for k, v in js["ok"].items() if k not in derived} == {
            k: v for k, v in python["ok"].items() if k not in derived
        }, vector["name"]
    assert parsed_events >= 5, "the vectors include web events whose user agent the Function parses"


#: Values that probe each rule's edges: types, empties, Amplitude's invalid ids, lengths, zones, Unicode.
TRICKY: list[Any] = [
    None,
    "",
    " ",
    "a",
    "abcd",
    "abcde",
    "user-12345",
    "NULL",
    "Unknown",
    "-1",
    "0",
    "{}",
    "lmy47d",
    "00000000-0000-0000-0000-000000000000",
    "\U0001f600\U0001f600\U0001f600\U0001f600",
    "\u00e9t\u00e9-\u00e9t\u00e9",
    "ios",
    "ANDROID",
    "web",
    0,
    7,
    -1,
    1.5,
    1795514300000,
    True,
    False,
    [],
    ["x"],
    {},
    {"k": "v"},
    "2026-11-24T10:00:00.123Z",
    "2026-11-24T10:00:00+05:30",
    "2026-11-24t10:00:00,5z",
    "2028-02-29T23:59:59.999-01",
    "2026-02-29T10:00:00Z",
    "2026-11-24T10:00:00",
    "2026-11-24T10:00:00.Z",
    "2026-11-24T10:00:00+2400",
    "\u0662\u0660\u0662\u0666-11-24T10:00:00Z",
    "1795514300000",
    "12a",
    "x" * 120,
    "web",
    "RudderLabs JavaScript SDK",
    "203.0.113.7",
    1795514300123,
    "1795514300123",
    -1,
]
PATHS: list[tuple[str, ...]] = [
    ("type",),
    ("event",),
    ("userId",),
    ("anonymousId",),
    ("messageId",),
    ("timestamp",),
    ("originalTimestamp",),
    ("receivedAt",),
    ("properties",),
    ("properties", "flag_key"),
    ("properties", "variant"),
    ("properties", "experiment_key"),
    ("properties", "extra"),
    ("context",),
    ("context", "device"),
    ("context", "device", "id"),
    ("context", "device", "type"),
    ("context", "device", "advertisingId"),
    ("context", "device", "idfa"),
    ("context", "os", "name"),
    ("context", "app", "version"),
    ("context", "location", "latitude"),
    ("context", "locale"),
    ("context", "ip"),
    ("context", "library"),
    ("traits",),
    ("traits", "plan"),
    ("traits", "[Experiment] checkout"),
    ("traits", "$set"),
    ("traits", "$set", "[EXPERIMENT] x"),
    ("integrations",),
    ("integrations", "Actions Amplitude"),
    ("integrations", "Actions Amplitude", "session_id"),
    # RudderStack's fields: they switch the mapping (source "auto") and feed it
    ("rudderId",),
    ("request_ip",),
    ("channel",),
    ("context", "sessionId"),
    ("context", "library", "name"),
]
OPTION_SETS: list[dict[str, Any]] = [
    {},
    {"source": "rudderstack"},
    {"source": "segment"},
    {"min_id_length": 1},
    {"min_id_length": 3},
    {"min_id_length": 8},
    {"exposure_events": ["$exposure", "Experiment Exposure"]},
    {"exposure_events": ["Experiment Exposure"]},
]


def _mutate(rng: random.Random, event: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = event
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    if value is None and rng.random() < 0.3:  # absent, not only null
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def generated_cases(count: int, seed: int) -> list[tuple[Any, dict[str, Any]]]:
    """Valid vector inputs with one to four fields replaced by tricky values, under varied options."""
    rng = random.Random(seed)
    bases = [v["input"] for v in VECTORS if isinstance(v["input"], dict) and "error" not in v["expect"]]
    cases: list[tuple[Any, dict[str, Any]]] = []
    for _ in range(count):
        event = json.loads(json.dumps(rng.choice(bases)))
        for _ in range(rng.randint(1, 4)):
            _mutate(rng, event, rng.choice(PATHS), json.loads(json.dumps(rng.choice(TRICKY))))
        if rng.random() < 0.2:
            event["event"] = "Experiment Exposure"
        cases.append((event, rng.choice(OPTION_SETS)))
    return cases


def test_generated_events_identical_in_js() -> None:
    cases = generated_cases(3000, seed=20261124)
    (result,) = run_js(
        [{"op": "translate", "cases": [{"event": e, "settings": js_settings(o)} for e, o in cases]}]
    )
    mismatches = []
    kinds: dict[str, int] = {}
    for (event, options), js in zip(cases, result["outputs"], strict=True):
        python = python_outcome(event, options)
        kind = python.get("error", "ok")
        kinds[kind] = kinds.get(kind, 0) + 1
        if js != python:
            mismatches.append((event, options, python, js))
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ; first: {mismatches[0]}"
    assert set(kinds) == {"ok", "EventNotSupported", "InvalidEventPayload", "ValidationError"}, kinds
    assert min(kinds.values()) >= 100, f"every outcome is well exercised: {kinds}"


# -- delivery: the fault matrix ---------------------------------------------------------------------------


def make_batch(size: int = 20) -> list[Any]:
    """Mostly good events; 3 and 11 fail in the translator, 7 and 15 only at Amplitude (index maps)."""
    events: list[Any] = [segment_event(i) for i in range(size)]
    events[3] = segment_event(3, type="identify")
    events[7] = segment_event(7, timestamp="1969-12-31T23:59:59.000Z")  # Amplitude refuses a time before 1970
    events[11] = segment_event(11, userId="null")
    events[15] = segment_event(15, timestamp=-1000)
    return events


Setup = Callable[[AmplitudeEmulator], None]


def inject(fault: str, **options: Any) -> Setup:
    return lambda emulator: emulator.inject(fault, **options)


def configure(**attributes: Any) -> Setup:
    def apply(emulator: AmplitudeEmulator) -> None:
        for name, value in attributes.items():
            setattr(emulator, name, value)

    return apply


#: (row id, emulator setup, events, Python destination options, JS settings and timing overrides).
MATRIX: list[tuple[str, Setup | None, list[Any] | None, dict[str, Any], dict[str, Any]]] = [
    ("delivered and 400 index maps", None, None, {}, {}),
    ("index map names one bad event at a time", configure(index_map_limit=1), None, {}, {}),
    ("500 after ingest", inject("500_after_ingest"), None, {}, {}),
    ("502", inject("502"), None, {}, {}),
    ("503 twice", inject("503", count=2), None, {}, {}),
    ("504", inject("504"), None, {}, {}),
    ("5xx outage", inject("503", count=None), None, {}, {}),
    ("reset twice", inject("reset", count=2), None, {}, {}),
    ("reset after ingest", inject("reset_after_ingest"), None, {}, {}),
    ("reset outage", inject("reset", count=None), None, {}, {}),
    ("non-JSON 200", inject("non_json"), None, {}, {}),
    ("non-JSON 504", inject("non_json", status=504), None, {}, {}),
    ("non-JSON outage", inject("non_json", count=None), None, {}, {}),
    ("403 configuration", inject("403"), None, {}, {}),
    ("400 invalid API key", configure(api_keys=frozenset({"another-key-0000"})), None, {}, {}),
    ("413 once", inject("413"), None, {}, {}),
    ("413 for a lone event", inject("413", count=None), [segment_event(1)], {}, {}),
    ("413 by size", configure(http_max_body_bytes=1500), None, {}, {}),
    ("429 everything, 30 s hold", inject("429"), None, {}, {}),
    ("429 everything, short hold", inject("429"), None, {"throttle_wait": 0.05}, {"throttleWaitMs": 50}),
    (
        "429 hot device",
        configure(eps_threshold=5),
        [segment_event(i, userId=None, anonymousId="anon-hot-device") for i in range(9)],
        {},
        {},
    ),
    (
        "429 daily quota",
        configure(daily_quota=4),
        [segment_event(i, userId=None, anonymousId="anon-quota-dev") for i in range(7)],
        {},
        {},
    ),
    (
        "slow past the deadline",
        inject("slow", count=None, delay=1.5),
        None,
        {"deadline": 0.4},
        {"deadlineMs": 400},
    ),
    (
        "min_id_length option sent",
        None,
        [segment_event(i, userId=f"u{i}", anonymousId=None) for i in range(5)],
        {"min_id_length": 2},
        {"minIdLength": 2},
    ),
]


@pytest.fixture
def emulator() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as server:
        yield server


def _run_python(
    emulator: AmplitudeEmulator, events: list[Any], options: dict[str, Any]
) -> list[dict[str, Any]]:
    with AmplitudeExposureDestination(
        API_KEY, endpoint=emulator.http_api_url, **{**PY_FAST, **options}
    ) as dest:
        return dest.on_batch(events)


def _js_timing(js_options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    timing = {**JS_FAST, **{k: v for k, v in js_options.items() if k.endswith("Ms")}}
    settings = {k: v for k, v in js_options.items() if not k.endswith("Ms")}
    return timing, settings


def assert_same_statuses(python: list[dict[str, Any]], js: list[dict[str, Any]]) -> None:
    assert [r["status"] for r in js] == [r["status"] for r in python]
    for py_item, js_item in zip(python, js, strict=True):
        py_message, js_message = py_item["errormessage"], js_item["errormessage"]
        if py_message.startswith(LIBRARY_WORDED):
            assert js_message.split(":", 1)[0] == py_message.split(":", 1)[0]
            assert js_message[:40] == py_message[:40] and js_message.endswith(py_message[-30:])
        else:
            assert js_message == py_message


@pytest.mark.parametrize(
    ("row", "setup", "events", "py_options", "js_options"), MATRIX, ids=[m[0] for m in MATRIX]
)
def test_on_batch_fault_matrix_matches_python(
    emulator: AmplitudeEmulator,
    row: str,
    setup: Setup | None,
    events: list[Any] | None,
    py_options: dict[str, Any],
    js_options: dict[str, Any],
) -> None:
    batch = events if events is not None else make_batch()
    if setup is not None:
        setup(emulator)
    python = _run_python(emulator, batch, py_options)
    py_ingested = sorted(e["insert_id"] for e in emulator.ingested)
    py_requests = emulator.request_count

    emulator.reset()
    if setup is not None:
        setup(emulator)
    timing, settings = _js_timing(js_options)
    (result,) = run_js(
        [
            {
                "op": "onBatch",
                "events": batch,
                "settings": {"apiKey": API_KEY, "endpoint": emulator.http_api_url, **settings},
            }
        ],
        timing=timing,
    )
    assert "ok" in result, result
    js = result["ok"]
    assert_same_statuses(python, js)
    if "slow" not in row:  # a slow answer may land after both sides gave up
        assert sorted(e["insert_id"] for e in emulator.ingested) == py_ingested
        assert emulator.request_count == py_requests, "the same requests, so the same retries and splits"
    assert API_KEY not in json.dumps(js)
    if "outage" in row or "configuration" in row or "API key" in row:
        assert {r["status"] for r in js} <= {400, 500}
    if row.startswith("429"):
        assert 429 in {r["status"] for r in js} or "short hold" in row


def _settle_js(emulator: AmplitudeEmulator, events: list[Any], rounds: int = 3) -> dict[int, dict[str, Any]]:
    """Call onBatch and resend the 429/500 events, as Segment does."""
    final: dict[int, dict[str, Any]] = {}
    pending = list(range(len(events)))
    settings = {"apiKey": API_KEY, "endpoint": emulator.http_api_url}
    for _ in range(rounds):
        (result,) = run_js(
            [{"op": "onBatch", "events": [events[i] for i in pending], "settings": settings}], timing=JS_FAST
        )
        retry = []
        for position, item in zip(pending, result["ok"], strict=True):
            if item["status"] in (429, 500):
                retry.append(position)
            else:
                final[position] = item
        pending = retry
        emulator.clear_faults()  # Amplitude recovers before Segment's retry
        if not pending:
            break
    assert not pending
    return final


@pytest.mark.parametrize("fault", ["500_after_ingest", "503", "reset_after_ingest", "non_json"])
def test_segment_retries_after_an_outage_ingest_every_event_exactly_once(
    emulator: AmplitudeEmulator, fault: str
) -> None:
    events = make_batch(40)
    emulator.inject(fault, count=None)
    final = _settle_js(emulator, events)
    bad = {i for i, item in final.items() if item["status"] == 400}
    assert bad == {3, 7, 11, 15}
    expected = {e["messageId"] for i, e in enumerate(events) if i not in bad}
    assert emulator.wait_for_ingested(len(expected), timeout=5)
    assert sorted(e["insert_id"] for e in emulator.ingested) == sorted(expected)


# -- onTrack ----------------------------------------------------------------------------------------------

TRACK_CASES: list[tuple[str, Any, Setup | None]] = [
    ("delivered", segment_event(1), None),
    ("not a track event", segment_event(2, type="page"), None),
    ("not an exposure", segment_event(3, event="Order Completed"), None),
    ("no flag_key", segment_event(4, properties={}), None),
    ("invalid id", segment_event(5, userId="undefined"), None),
    ("Amplitude rejects a field", segment_event(6, timestamp="1969-12-31T23:59:59.000Z"), None),
    ("outage", segment_event(7), inject("502", count=None)),
    ("throttled", segment_event(8), inject("429")),
    ("forbidden", segment_event(9), inject("403")),
    ("too large alone", segment_event(10), inject("413")),
]


@pytest.mark.parametrize(("case", "event", "setup"), TRACK_CASES, ids=[c[0] for c in TRACK_CASES])
def test_on_track_raises_what_python_raises(
    emulator: AmplitudeEmulator, case: str, event: Any, setup: Setup | None
) -> None:
    if setup is not None:
        setup(emulator)
    with AmplitudeExposureDestination(API_KEY, endpoint=emulator.http_api_url, **PY_FAST) as destination:
        try:
            destination.on_track(event)
            python: dict[str, Any] = {"ok": None}
        except (PermanentError, RetryError) as exc:
            python = {"error": type(exc).__name__, "message": str(exc)}
    emulator.reset()
    if setup is not None:
        setup(emulator)
    settings = {"apiKey": API_KEY, "endpoint": emulator.http_api_url}
    (js,) = run_js([{"op": "onTrack", "event": event, "settings": settings}], timing=JS_FAST)
    assert js.get("error") == python.get("error")
    if "ok" in python:
        assert js["ok"] is None
        assert [e["insert_id"] for e in emulator.ingested] == [event["messageId"]]
    elif not python["message"].startswith(tuple(w.removeprefix("RetryError: ") for w in LIBRARY_WORDED)):
        assert js["message"] == python["message"]


# -- the runtime, settings and the 5 s limit --------------------------------------------------------------


def test_default_region_and_eu_reach_amplitude_through_the_harness(emulator: AmplitudeEmulator) -> None:
    commands = [
        {"op": "onTrack", "event": segment_event(1), "settings": {"apiKey": API_KEY}},
        {"op": "onTrack", "event": segment_event(2), "settings": {"apiKey": API_KEY, "region": "eu"}},
        {"op": "onTrack", "event": segment_event(3), "settings": {"apiKey": API_KEY, "region": "mars"}},
    ]
    first, second, third = run_js(commands, timing=JS_FAST, amplitude=emulator.url)
    assert first == {"ok": None, "elapsed_ms": first["elapsed_ms"]}
    assert second["ok"] is None
    assert third["error"] == "RetryError" and "region" in third["message"]
    assert sorted(e["insert_id"] for e in emulator.ingested) == ["msg-000001", "msg-000002"]
    assert {r.path for r in emulator.requests} == {"/2/httpapi"}


def test_settings_errors_keep_the_events_and_never_show_the_key(emulator: AmplitudeEmulator) -> None:
    batch = [segment_event(1), segment_event(2, type="identify")]
    wrong_key = "amp-wrong-key-0f0f0f0f0f"
    commands: list[dict[str, Any]] = [
        {"op": "onBatch", "events": batch, "settings": {"endpoint": emulator.http_api_url}},
        {"op": "onBatch", "events": batch, "settings": {"apiKey": API_KEY, "minIdLength": "five"}},
        {
            "op": "onBatch",
            "events": batch,
            "settings": {"apiKey": wrong_key, "endpoint": emulator.http_api_url},
        },
        {
            "op": "onTrack",
            "event": batch[0],
            "settings": {"apiKey": wrong_key, "endpoint": emulator.http_api_url},
        },
        {"op": "onBatch", "events": batch, "settings": {"apiKey": API_KEY, "endpoint": "ftp://example"}},
    ]
    no_key, bad_length, wrong, track, bad_endpoint = run_js(commands, timing=JS_FAST)
    assert [r["status"] for r in no_key["ok"]] == [500, 400]
    assert "apiKey" in no_key["ok"][0]["errormessage"]
    assert [r["status"] for r in bad_length["ok"]] == [500, 500], "translation depends on minIdLength"
    assert [r["status"] for r in wrong["ok"]] == [500, 400]
    assert "Invalid API key" in wrong["ok"][0]["errormessage"]
    assert track["error"] == "RetryError"
    assert [r["status"] for r in bad_endpoint["ok"]] == [500, 400]
    assert wrong_key not in json.dumps([wrong, track])
    assert emulator.ingested_count == 0


def test_string_settings_as_the_segment_ui_sends_them(emulator: AmplitudeEmulator) -> None:
    events = [
        segment_event(1, userId="abc", anonymousId=None),
        segment_event(2, event="Experiment Exposure"),
        segment_event(3, event="Viewed Flag"),
    ]
    settings = {
        "apiKey": f" {API_KEY} ",
        "endpoint": emulator.http_api_url,
        "minIdLength": "3",
        "exposureEvents": "$exposure, Experiment Exposure",
    }
    (result,) = run_js([{"op": "onBatch", "events": events, "settings": settings}], timing=JS_FAST)
    assert [r["status"] for r in result["ok"]] == [200, 200, 400]
    assert {e["event_type"] for e in emulator.ingested} == {"$exposure"}


def test_production_timing_fits_segments_five_seconds(emulator: AmplitudeEmulator) -> None:
    """No timing overrides: a brief 503 is retried and delivered; a hung Amplitude is answered in time."""
    settings = {"apiKey": API_KEY, "endpoint": emulator.http_api_url}
    emulator.inject("503")
    (recovered,) = run_js([{"op": "onBatch", "events": make_batch(), "settings": settings}])
    assert [r["status"] for r in recovered["ok"]].count(200) == 16
    emulator.inject("slow", count=None, delay=6.0)
    (hung,) = run_js([{"op": "onBatch", "events": make_batch(), "settings": settings}])
    assert 4400 <= hung["elapsed_ms"] < 5000, "within the 4.5 s deadline, so under Segment's 5 s limit"
    assert {r["status"] for r in hung["ok"]} == {400, 500}
    emulator.clear_faults()


def test_source_is_a_plain_segment_function() -> None:
    source = FUNCTION.read_text(encoding="utf-8")
    assert "require(" not in source and "\nimport " not in source and "export " not in source
    assert "async function onTrack (event, settings)" in source
    assert "async function onBatch (events, settings)" in source
    subprocess.run([require_node(), "--check", str(FUNCTION)], check=True, capture_output=True)


BUILD_DIR = ROOT / "scripts" / "function-build"


@pytest.mark.requires("npm:function-build")
def test_the_bundled_parser_is_what_the_build_produces() -> None:
    """The Function's GENERATED part is @amplitude/ua-parser-js as scripts/function-build/build.mjs bundles it
    from its lockfile, with the licence notice: nobody edits it by hand, nobody forgets to rebuild."""
    source = FUNCTION.read_text(encoding="utf-8")
    assert "@amplitude/ua-parser-js 0.7.33 (MIT)" in source
    assert "Permission is hereby granted, free of charge" in source, "the MIT notice travels with the code"
    done = subprocess.run(
        [require_node(), str(BUILD_DIR / "build.mjs"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def test_cli_prints_the_function() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "segment_exposure", "function"], capture_output=True, text=True, check=True
    )
    assert done.stdout == FUNCTION.read_text(encoding="utf-8")
