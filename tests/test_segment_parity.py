"""Parity with Segment's own Amplitude (Actions) destination, the reference for what lands in Amplitude.

Every golden vector (``tests/vectors/translate``) and every event of the corpus
(``tests/fixtures/segment_corpus.json``: web, iOS, Android and server events, 60+ real user agents, odd but
real inputs) goes through Segment's destination (``tests/js/segment-actions/oracle.mjs``: the "Track Calls"
preset run by actions-core, its HTTP call intercepted) and through ``to_amplitude_event``; the two Amplitude
events must agree field by field. The only differences allowed are the rows of ``DEVIATIONS``, read
from ``segment_exposure/data/deviations.json`` (the docs' "Differences" page renders the same file). The
JavaScript Segment Function is held to the same reference.

Run with ``-s`` to see the counts (events compared, fields differing before the table is applied, by field).
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from dateutil.parser import isoparse

from segment_exposure import PermanentError, to_amplitude_event
from segment_exposure.delivery.translate import EXPERIMENT_PROPERTY_PREFIX

from .prerequisites import require_node
from .segment_oracle import require_oracle, run_oracle

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
VECTOR_DIR = ROOT / "tests" / "vectors" / "translate"
CORPUS_FILE = ROOT / "tests" / "fixtures" / "segment_corpus.json"
HARNESS = ROOT / "tests" / "js" / "harness.mjs"
SEGMENT_INTEGRATION = "Actions Amplitude"

Event = dict[str, Any]
Options = dict[str, Any]


# -- the cases ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One Segment event with the translator options it is run with."""

    name: str
    event: Any
    options: Options


def load_cases() -> list[Case]:
    """The golden vectors, then the corpus."""
    cases = [
        Case(f"vector {path.stem}: {v['name']}", v["input"], v.get("options") or {})
        for path in sorted(VECTOR_DIR.glob("*.json"))
        for v in json.loads(path.read_text(encoding="utf-8"))
    ]
    corpus = json.loads(CORPUS_FILE.read_text(encoding="utf-8"))
    cases += [Case(f"corpus: {item['name']}", item["event"], {}) for item in corpus]
    return cases


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _iso_ms(value: Any) -> int | None:
    """Epoch ms of an ISO 8601 string with a zone (``+02`` and comma fractions too), else ``None``."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        if sys.version_info >= (3, 11):
            return None
        # Python 3.10's fromisoformat reads only its own output: no "Z", "+02", comma, or 1-5 digit fraction.
        # dateutil (segment-analytics-python's own dependency) reads the forms 3.11's does.
        try:
            parsed = isoparse(value)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp()) * 1000 + parsed.microsecond // 1000


# -- the deliberate deviations: ONE table --------------------------------------------------------------

Adjust = Callable[[Event, Event, Options], bool]
Refusal = Callable[[str, str, Event], bool]


@dataclass(frozen=True)
class Deviation:
    """One deliberate difference from Segment's destination, with why.

    Exactly one of ``adjust`` (turns what Segment sends into what we send on purpose; returns whether it
    changed anything), ``segment_refuses`` (labels of fields whose value Segment's validator refuses, so it
    drops the whole event, where we deliver the event), ``we_refuse`` (a refusal of ours for an event
    Segment sends) or ``ua_derived`` (the fields Segment derives from the user agent may differ; counted,
    and bounded by :data:`MIN_UA_AGREEMENT`) is set. ``translator_only`` rows apply to the Python translator
    and not to the Segment Function.
    """

    name: str
    reason: str
    fields: tuple[str, ...] = ()
    adjust: Adjust | None = None
    segment_refuses: tuple[str, ...] = ()
    we_refuse: Refusal | None = None
    ua_derived: bool = False
    translator_only: bool = False


def _insert_id(event: Event, expected: Event, options: Options) -> bool:
    message_id = event.get("messageId")
    if isinstance(message_id, (int, float)) and not isinstance(message_id, bool):
        message_id = json.dumps(message_id)  # a number is sent in its JSON (JavaScript) string form
    if isinstance(message_id, str) and message_id:
        expected["insert_id"] = message_id
        return True
    return False


def _null_user_id(event: Event, expected: Event, options: Options) -> bool:
    if "user_id" in expected and expected["user_id"] is None:
        del expected["user_id"]
        return True
    return False


def _no_batch_flag(event: Event, expected: Event, options: Options) -> bool:
    return expected.pop("use_batch_endpoint", None) is not None


def _is_experiment_key(key: str) -> bool:
    return key[: len(EXPERIMENT_PROPERTY_PREFIX)].lower() == EXPERIMENT_PROPERTY_PREFIX.lower()


def _strip_experiment(event: Event, expected: Event, options: Options) -> bool:
    props = expected.get("user_properties")
    if not isinstance(props, dict):
        return False
    cleaned: dict[str, Any] = {}
    for key, value in props.items():
        if _is_experiment_key(key):
            continue
        if key.startswith("$") and isinstance(value, dict):
            value = {k: v for k, v in value.items() if not _is_experiment_key(k)}
            if not value:
                continue
        cleaned[key] = value
    if cleaned == props:
        return False
    expected["user_properties"] = cleaned  # {} when only [Experiment] keys were there, as for traits {}
    return True


def _merge_traits_operations(event: Event, expected: Event, options: Options) -> bool:
    traits = event.get("traits")
    props = expected.get("user_properties")
    if not isinstance(traits, dict) or not isinstance(props, dict):
        return False
    changed = False
    for op in ("$set", "$setOnce"):
        own = traits.get(op)
        if isinstance(own, dict) and isinstance(props.get(op), dict) and props[op] != own:
            merged = {**own, **props[op]}
            if merged != props[op]:
                props[op] = merged
                changed = True
    return changed


def _empty_device_id(event: Event, expected: Event, options: Options) -> bool:
    if _dig(event, "context", "device", "id") != "" or "device_id" in expected:
        return False
    anonymous_id = event.get("anonymousId")
    if isinstance(anonymous_id, bool) or anonymous_id in (None, ""):
        return False
    expected["device_id"] = anonymous_id if isinstance(anonymous_id, str) else json.dumps(anonymous_id)
    return True


def _exposure_alias(event: Event, expected: Event, options: Options) -> bool:
    if expected.get("event_type") != "$exposure" and options.get("exposure_events"):
        expected["event_type"] = "$exposure"
        return True
    return False


def _time_fallback(event: Event, expected: Event, options: Options) -> bool:
    timestamp = event.get("timestamp")
    misread = isinstance(timestamp, str) and timestamp.strip().isdigit()  # Segment reads "1795514400123"
    if not (timestamp is None or timestamp == "" or misread):  # as a date in year 1795514400123
        return False
    expected.pop("time", None)
    for field in ("originalTimestamp", "receivedAt"):
        ms = _iso_ms(event.get(field))
        if ms is not None:
            expected["time"] = ms
            return True
    return False


_DECIMAL = re.compile(r"\s*[+-]?\d+(\.\d*)?\s*")


def _session_misread(event: Event, expected: Event, options: Options) -> bool:
    raw = _dig(event, "integrations", SEGMENT_INTEGRATION, "session_id")
    if "session_id" not in expected or not isinstance(raw, str) or not _DECIMAL.fullmatch(raw):
        return False
    value = expected["session_id"]
    digits_only = raw.isdigit()
    if digits_only and isinstance(value, int) and abs(value) <= 2**53 - 1:
        return False  # an all-digit string read as the number it spells: followed
    del expected["session_id"]
    return True


def _non_string_ip(event: Event, expected: Event, options: Options) -> bool:
    ip = _dig(event, "context", "ip")
    if ip is None or isinstance(ip, str) or "ip" not in expected:
        return False
    del expected["ip"]
    return True


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    return value


def _lone_surrogates(event: Event, expected: Event, options: Options) -> bool:
    cleaned = _replace_surrogates(expected)
    if cleaned == expected:
        return False
    expected.clear()
    expected.update(cleaned)
    return True


def _refuses(*fragments: str, kind: str = "") -> Refusal:
    def match(error: str, message: str, event: Event) -> bool:
        return (not kind or error == kind) and any(f in message for f in fragments)

    return match


#: What each deliberate difference does in the comparison, by its name. The names, fields and reasons live
#: in ``segment_exposure/data/deviations.json``, which the docs' "Differences" page is generated from.
_BEHAVIOUR: dict[str, dict[str, Any]] = {
    "insert_id": {"adjust": _insert_id},
    "null userId left out": {"adjust": _null_user_id},
    "no use_batch_endpoint": {"adjust": _no_batch_flag},
    "traits' own $set/$setOnce merged": {"adjust": _merge_traits_operations},
    "[Experiment] traits stripped": {"adjust": _strip_experiment},
    'context.device.id "" falls back to anonymousId': {"adjust": _empty_device_id},
    "exposure aliases renamed": {"adjust": _exposure_alias},
    "time from originalTimestamp / receivedAt": {"adjust": _time_fallback},
    "session_id Segment misreads is dropped": {"adjust": _session_misread},
    "non-string ip dropped": {"adjust": _non_string_ip},
    "lone surrogates replaced": {"adjust": _lone_surrogates},
    "odd secondary fields do not drop the exposure": {
        "segment_refuses": (
            "Timestamp",
            "Session ID",
            "Latitude",
            "Longtitude",
            "IP Address",
            "User Properties",
            "Device ID",
            "User ID",
        )
    },
    "user-agent parser": {"ua_derived": True},
    "not an exposure": {
        "we_refuse": _refuses("not an exposure event", "only track events", kind="EventNotSupported")
    },
    "malformed exposure": {
        "we_refuse": _refuses("properties.flag_key", "so there is no flag_key", kind="InvalidEventPayload")
    },
    "ids Amplitude refuses": {"we_refuse": _refuses("no identity", "list of invalid ids", "minimum of")},
}

DEVIATION_ROWS: list[dict[str, Any]] = json.loads(
    resources.files("segment_exposure").joinpath("data/deviations.json").read_text("utf-8")
)["segment_destination"]

#: Every deliberate difference from Segment's Amplitude (Actions) destination ("Track Calls" preset).
DEVIATIONS: tuple[Deviation, ...] = tuple(
    Deviation(
        row["name"],
        row["why"],
        fields=tuple(row.get("fields", ())),
        translator_only=row.get("translator_only", False),
        **_BEHAVIOUR.get(row["name"], {}),
    )
    for row in DEVIATION_ROWS
)


# -- running both sides ------------------------------------------------------------------------------------


def ours(case: Case) -> dict[str, Any]:
    try:
        return {"ok": to_amplitude_event(case.event, **case.options)}
    except PermanentError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


def run_function(cases: list[Case]) -> list[dict[str, Any]]:
    """The JavaScript Segment Function's translation of every case (tests/js/harness.mjs)."""
    node = require_node()
    commands = [
        {
            "op": "translate",
            "cases": [
                {
                    "event": c.event,
                    "settings": {
                        "minIdLength": c.options.get("min_id_length"),
                        "exposureEvents": c.options.get("exposure_events"),
                    },
                }
                for c in cases
            ],
        }
    ]
    done = subprocess.run(
        [node, str(HARNESS)],
        input=json.dumps({"commands": commands}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"harness failed ({done.returncode}):\n{done.stderr[-3000:]}"
    outputs: list[dict[str, Any]] = json.loads(done.stdout)["results"][0]["outputs"]
    return outputs


def _norm(value: Any) -> Any:
    """JSON values compared as JSON compares them: 1.0 is 1, True is not 1."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def field_diffs(expected: Event, actual: Event) -> list[str]:
    """Names of the fields that differ (user_properties by key, e.g. ``user_properties.$set``)."""
    diffs = []
    for key in sorted(set(expected) | set(actual)):
        want, got = _norm(expected.get(key)), _norm(actual.get(key))
        if want == got and (key in expected) == (key in actual):
            continue
        if key == "user_properties" and isinstance(want, dict) and isinstance(got, dict):
            diffs += [
                f"user_properties.{k}"
                for k in sorted(set(want) | set(got))
                if want.get(k) != got.get(k) or (k in want) != (k in got)
            ]
        else:
            diffs.append(key)
    return diffs


#: Segment's field labels in its validation messages: (input paths it reads, Amplitude fields it fills).
SEGMENT_LABELS: dict[str, tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]] = {
    "Timestamp": ((("timestamp",),), ("time",)),
    "Session ID": ((("integrations", SEGMENT_INTEGRATION, "session_id"),), ("session_id",)),
    "Latitude": ((("context", "location", "latitude"),), ("location_lat",)),
    "Longtitude": ((("context", "location", "longitude"),), ("location_lng",)),
    "IP Address": ((("context", "ip"),), ("ip",)),
    "User Properties": ((("traits",),), ("user_properties",)),
    "Device ID": ((("context", "device", "id"), ("anonymousId",)), ("device_id", "idfv")),
    "User ID": ((("userId",),), ("user_id",)),
}


def _refused_labels(labels: tuple[str, ...], message: str) -> list[str]:
    """The listed labels Segment's refusal names; none if it also names a field we do not list."""
    named = [label for label in labels if f"{label} must" in message]
    return named if named and "Event Type" not in message else []


def _strip_refused(event: Event, labels: list[str]) -> Event:
    """The event without the odd input fields behind ``labels`` (for a multi-source id: the object one)."""
    stripped = copy.deepcopy(event)
    for label in labels:
        candidates = SEGMENT_LABELS[label][0]
        for *parents, last in candidates:
            holder = _dig(stripped, *parents) if parents else stripped
            if isinstance(holder, dict) and (
                len(candidates) == 1 or isinstance(holder.get(last), (dict, list))
            ):
                holder.pop(last, None)
    return stripped


#: Fields Segment's destination derives from the user agent, and where the context overrides each.
UA_FIELDS: dict[str, tuple[str, ...] | None] = {
    "os_name": ("context", "os", "name"),
    "os_version": ("context", "os", "version"),
    "device_manufacturer": ("context", "device", "manufacturer"),
    "device_model": ("context", "device", "model"),
    "device_type": None,
}

#: The share of user-agent-derived fields on which our parser must agree with Segment's.
MIN_UA_AGREEMENT = 0.95


def ua_derived_fields(event: Event) -> list[str]:
    """The fields whose value Segment takes from its user-agent parser for this event."""
    agent = _dig(event, "context", "userAgent")
    if agent in (None, "", False, 0):
        return []
    return [f for f, path in UA_FIELDS.items() if path is None or _dig(event, *path) in (None, "")]


@dataclass
class Report:
    """What the comparison found, for the assertion message and the printed counts."""

    compared: int = 0
    ua_total: int = 0
    ua_agree: int = 0
    raw_diffs: Counter[str] | None = None
    by_deviation: Counter[str] | None = None
    unexplained: list[str] | None = None

    def __post_init__(self) -> None:
        self.raw_diffs = Counter()
        self.by_deviation = Counter()
        self.unexplained = []


def compare(
    cases: list[Case],
    segment: list[dict[str, Any]],
    outcomes: list[dict[str, Any]],
    *,
    function: bool = False,
) -> Report:
    """Hold ``outcomes`` (ours, or the Function's) against Segment's, through :data:`DEVIATIONS`."""
    report = Report()
    assert report.raw_diffs is not None and report.by_deviation is not None and report.unexplained is not None
    rows = [d for d in DEVIATIONS if not (function and d.translator_only)]
    reruns: dict[int, tuple[Event, list[str]]] = {}
    for i, (case, seg, out) in enumerate(zip(cases, segment, outcomes, strict=True)):
        if seg["outcome"] in ("not_an_event", "not_subscribed"):
            continue  # Segment never delivers it to this preset; our refusal is checked by the vectors
        report.compared += 1
        if seg["outcome"] == "error":
            if "ok" not in out:
                continue  # both refuse
            message = seg["error"]["message"]
            row, labels = next(
                ((d, ls) for d in rows if (ls := _refused_labels(d.segment_refuses, message))), (None, [])
            )
            if row is None:
                report.unexplained.append(f"{case.name}: Segment refuses ({message}), we send")
                continue
            report.raw_diffs["(Segment refuses, we deliver)"] += 1
            report.by_deviation[row.name] += 1
            reruns[i] = (_strip_refused(case.event, labels), labels)
            continue
        if "ok" not in out:
            refusal = next(
                (d for d in rows if d.we_refuse and d.we_refuse(out["error"], out["message"], case.event)),
                None,
            )
            report.raw_diffs["(Segment delivers, we refuse)"] += 1
            if refusal is None:
                report.unexplained.append(
                    f"{case.name}: Segment sends, we refuse: {out['error']}: {out['message']}"
                )
            else:
                report.by_deviation[refusal.name] += 1
            continue
        _compare_events(case, seg["event"], out["ok"], rows, report, function=function)

    if reruns:
        indices = sorted(reruns)
        again = run_oracle([reruns[i][0] for i in indices])
        for i, seg in zip(indices, again, strict=True):
            case = cases[i]
            if seg["outcome"] != "sent":
                report.unexplained.append(f"{case.name}: Segment still refuses without the odd field: {seg}")
                continue
            # Compare everything but the fields Segment refused; what we make of those is our own reading.
            skip = {field for label in reruns[i][1] for field in SEGMENT_LABELS[label][1]}
            expected = {k: v for k, v in seg["event"].items() if k not in skip}
            actual = {k: v for k, v in outcomes[i]["ok"].items() if k not in skip}
            _compare_events(case, expected, actual, rows, report, function=function, count_raw=False)
    return report


def expected_from_segment(case: Case, segment_event: Event, *, function: bool = False) -> Event:
    """What we deliberately send, given what Segment sends: its event through the ``adjust`` rows."""
    expected = copy.deepcopy(segment_event)
    event = case.event if isinstance(case.event, dict) else {}
    for row in DEVIATIONS:
        if row.adjust is not None and not (function and row.translator_only):
            row.adjust(event, expected, case.options)
    return expected


def _compare_events(
    case: Case,
    segment_event: Event,
    actual: Event,
    rows: list[Deviation],
    report: Report,
    *,
    function: bool,
    count_raw: bool = True,
) -> None:
    assert report.raw_diffs is not None and report.by_deviation is not None and report.unexplained is not None
    if count_raw:
        report.raw_diffs.update(field_diffs(segment_event, actual))
    expected = copy.deepcopy(segment_event)
    event = case.event if isinstance(case.event, dict) else {}
    for row in rows:
        if row.adjust is not None and row.adjust(event, expected, case.options):
            report.by_deviation[row.name] += 1
    remaining = field_diffs(expected, actual)
    derived = ua_derived_fields(event)
    for field in derived:
        report.ua_total += 1
        if field not in remaining:
            report.ua_agree += 1
            continue
        row = next((r for r in rows if r.ua_derived), None)
        if row is None:
            continue  # the Function parses with Segment's own parser: a difference stays unexplained
        remaining.remove(field)
        report.by_deviation[row.name] += 1
    for name in remaining:
        path = name.split(".", 1)
        want, got = _dig(expected, *path), _dig(actual, *path)
        report.unexplained.append(
            f"{case.name}: {name}: Segment {json.dumps(want)[:160]}, ours {json.dumps(got)[:160]}"
        )


def _print(title: str, report: Report) -> None:
    assert report.raw_diffs is not None and report.by_deviation is not None
    print(f"\n{title}: {report.compared} events compared with Segment's destination")
    print(f"  fields differing before the deviation table: {sum(report.raw_diffs.values())}")
    for name, count in report.raw_diffs.most_common():
        print(f"    {name}: {count}")
    print("  explained by the deviation table:")
    for name, count in report.by_deviation.most_common():
        print(f"    {name}: {count}")
    rate = report.ua_agree / report.ua_total if report.ua_total else 1.0
    print(
        "  user-agent-derived fields agreeing with Segment's parser: "
        f"{report.ua_agree}/{report.ua_total} ({rate:.1%})"
    )
    print(f"  unexplained: {len(report.unexplained or [])}")


# -- the tests ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return load_cases()


@pytest.fixture(scope="module")
def segment(cases: list[Case]) -> list[dict[str, Any]]:
    require_oracle()
    return run_oracle([c.event for c in cases])


def test_the_corpus_covers_what_segment_sees(cases: list[Case]) -> None:
    corpus = [c for c in cases if c.name.startswith("corpus: ")]
    agents = {_dig(c.event, "context", "userAgent") for c in corpus} - {None}
    libraries = Counter(_dig(c.event, "context", "library", "name") for c in corpus)
    assert len(agents) >= 40, "at least 40 real user agents"
    assert libraries["analytics.js"] >= 40
    for library in (
        "analytics-swift",
        "analytics-ios",
        "analytics-kotlin",
        "analytics-android",
        "analytics-python",
    ):
        assert libraries[library] >= 1, library
    assert any(_dig(c.event, "context", "userAgentData") for c in corpus)
    assert any(_dig(c.event, "context", "campaign") for c in corpus)


@pytest.mark.requires("npm:segment-actions")
def test_translator_matches_segments_destination(cases: list[Case], segment: list[dict[str, Any]]) -> None:
    report = compare(cases, segment, [ours(c) for c in cases])
    _print("translator", report)
    assert report.compared >= 250
    assert not report.unexplained, "differences not in DEVIATIONS:\n" + "\n".join(report.unexplained or [])
    assert report.ua_agree >= MIN_UA_AGREEMENT * report.ua_total, "user-agent parser agreement too low"


@pytest.mark.requires("npm:segment-actions")
def test_segment_function_matches_segments_destination(
    cases: list[Case], segment: list[dict[str, Any]]
) -> None:
    report = compare(cases, segment, run_function(cases), function=True)
    _print("Segment Function", report)
    assert not report.unexplained, "differences not in DEVIATIONS:\n" + "\n".join(report.unexplained or [])
    assert report.ua_total >= 200, "the corpus's web events put many user-agent fields to the test"
    assert report.ua_agree == report.ua_total, "the Function parses user agents exactly as Segment does"


@pytest.mark.requires("npm:segment-actions")
def test_golden_vectors_follow_the_reference(cases: list[Case], segment: list[dict[str, Any]]) -> None:
    """The vectors' expectations are Segment's output through the table, not our own reading of Segment."""
    from .regenerate_vectors import expectation

    vectors = [
        v for path in sorted(VECTOR_DIR.glob("*.json")) for v in json.loads(path.read_text(encoding="utf-8"))
    ]
    stale = [
        v["name"] for v, seg in zip(vectors, segment, strict=False) if expectation(v, seg) != v["expect"]
    ]
    assert not stale, f"run `python -m tests.regenerate_vectors`: {stale}"


@pytest.mark.requires("npm:segment-actions")
def test_every_deviation_is_needed(cases: list[Case], segment: list[dict[str, Any]]) -> None:
    """A row no case uses is either stale or untested: both are wrong in a table of reasons."""
    report = compare(cases, segment, [ours(c) for c in cases])
    assert report.by_deviation is not None
    unused = [d.name for d in DEVIATIONS if report.by_deviation[d.name] == 0]
    assert not unused, f"deviations no case needs: {unused}"


def test_the_documented_table_is_the_tests_table() -> None:
    """Each row of the data file the docs render has its behaviour here, and each behaviour its row."""
    assert [row["name"] for row in DEVIATION_ROWS] == list(_BEHAVIOUR)
    for row, deviation in zip(DEVIATION_ROWS, DEVIATIONS, strict=True):
        kinds = [
            deviation.adjust is not None,
            bool(deviation.segment_refuses),
            deviation.we_refuse is not None,
            deviation.ua_derived,
        ]
        assert sum(kinds) == 1, f"{row['name']}: exactly one kind of difference"
        whole_event = row.get("whole_event")
        if deviation.segment_refuses:
            assert whole_event == "segment refuses it", row["name"]
        elif deviation.we_refuse is not None:
            assert whole_event == "we refuse it", row["name"]
        else:
            assert whole_event is None and deviation.fields, f"{row['name']}: the fields it differs in"


def test_a_missing_reference_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In CI (``CI=true``) an uninstalled reference is a failure, never a skip that hides the parity test."""
    from . import segment_oracle

    monkeypatch.setattr(segment_oracle, "ORACLE_DIR", tmp_path)
    monkeypatch.setenv("SEGMENT_EXPOSURE_TEST_INSTALL", "0")  # an empty folder: nothing for npm to install
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"npm ci --prefix {tmp_path} --no-audit"):
        segment_oracle.require_oracle()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        segment_oracle.require_oracle()
