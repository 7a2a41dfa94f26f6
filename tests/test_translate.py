"""The translator against the shared golden vectors, plus properties no table of examples can cover."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segment_exposure import to_amplitude_event
from segment_exposure.delivery import errors
from segment_exposure.delivery.translate import INVALID_IDS, id_problem, parse_time_ms, validate_id

VECTOR_DIR = Path(__file__).parent / "vectors" / "translate"
ERROR_CLASSES = {
    "EventNotSupported": errors.EventNotSupported,
    "InvalidEventPayload": errors.InvalidEventPayload,
    "ValidationError": errors.ValidationError,
}


def _load_vectors() -> list[tuple[str, dict[str, Any]]]:
    vectors = []
    for path in sorted(VECTOR_DIR.glob("*.json")):
        for vector in json.loads(path.read_text(encoding="utf-8")):
            vectors.append((f"{path.stem}: {vector['name']}", vector))
    return vectors


VECTORS = _load_vectors()


def test_vectors_are_well_formed() -> None:
    names = [name for name, _ in VECTORS]
    assert len(names) == len(set(names)), "vector names must be unique"
    assert len(VECTORS) >= 100
    for name, vector in VECTORS:
        assert set(vector) <= {"name", "note", "input", "options", "expect"}, name
        assert set(vector["options"]) <= {"min_id_length", "exposure_events"}, name
        expect = vector["expect"]
        if isinstance(expect, dict) and "error" in expect:
            assert expect["error"] in ERROR_CLASSES, name
    kinds = {v["expect"].get("error", "ok") if isinstance(v["expect"], dict) else "ok" for _, v in VECTORS}
    assert kinds == {"ok", *ERROR_CLASSES}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "vector"), VECTORS, ids=[name for name, _ in VECTORS])
def test_vector(name: str, vector: dict[str, Any]) -> None:
    event = vector["input"]
    before = copy.deepcopy(event)
    options = vector["options"]
    expect = vector["expect"]
    if "error" in expect and set(expect) <= {"error", "message_contains"}:
        with pytest.raises(ERROR_CLASSES[expect["error"]]) as raised:
            to_amplitude_event(event, **options)
        assert type(raised.value) is ERROR_CLASSES[expect["error"]]
        message = str(raised.value)
        for fragment in expect.get("message_contains", []):
            assert fragment in message, f"{fragment!r} not in {message!r}"
    else:
        result = to_amplitude_event(event, **options)
        assert result == expect
        if "time" in expect:
            assert type(result["time"]) is int
        if "session_id" in expect:
            assert type(result["session_id"]) is int
        assert json.loads(json.dumps(result)) == result
    assert event == before, "the translator must not modify its input"


def test_every_error_message_says_what_to_do() -> None:
    """Messages are for the person reading Segment's event delivery tab: never empty, never a bare repr."""
    for _, vector in VECTORS:
        expect = vector["expect"]
        if "error" in expect and set(expect) <= {"error", "message_contains"}:
            with pytest.raises(errors.PermanentError) as raised:
                to_amplitude_event(vector["input"], **vector["options"])
            assert len(str(raised.value)) > 30


def test_min_id_length_error_names_the_option() -> None:
    with pytest.raises(errors.ValidationError, match="min_id_length"):
        validate_id("abcd")
    assert validate_id("abcd", min_id_length=4) == "abcd"
    assert id_problem("abcde") is None
    assert id_problem("NuLl", min_id_length=1) is not None
    assert "" in INVALID_IDS


@pytest.mark.parametrize("bad", [0, -1, 2.5, "5", True])
def test_bad_min_id_length_is_a_programming_error(bad: Any) -> None:
    event = {"type": "track", "event": "$exposure", "userId": "user-1", "timestamp": "2026-11-24T10:00:00Z"}
    event["properties"] = {"flag_key": "f"}
    with pytest.raises(ValueError, match="min_id_length"):
        to_amplitude_event(event, min_id_length=bad)


def test_exposure_events_accepts_a_single_string() -> None:
    event = {
        "type": "track",
        "event": "Exposure",
        "userId": "user-1",
        "timestamp": "2026-11-24T10:00:00Z",
        "properties": {"flag_key": "f"},
    }
    assert to_amplitude_event(event, exposure_events="Exposure")["event_type"] == "$exposure"
    with pytest.raises(errors.EventNotSupported):
        to_amplitude_event(dict(event, event="Expo"), exposure_events="Exposure")  # not a substring match


def test_long_values_are_cut_in_messages() -> None:
    event = {"type": "track", "event": "x" * 10_000}
    with pytest.raises(errors.EventNotSupported) as raised:
        to_amplitude_event(event)
    assert len(str(raised.value)) < 400


def test_non_string_trait_keys_do_not_crash() -> None:
    event = {
        "type": "track",
        "event": "$exposure",
        "userId": "user-1",
        "timestamp": "2026-11-24T10:00:00Z",
        "properties": {"flag_key": "f"},
        "traits": {1: "a", "$set": {2: "b", "[Experiment] f": "on"}},
    }
    assert to_amplitude_event(event)["user_properties"] == {1: "a", "$set": {2: "b"}}


# -- the time parser against datetime ----------------------------------------------------------------

aware_times = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(timezone.utc)
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(
    moment=aware_times,
    offset_minutes=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    digits=st.integers(min_value=0, max_value=9),
    extra=st.integers(min_value=0, max_value=999),
    style=st.sampled_from(["colon", "compact", "z"]),
)
def test_parse_time_ms_matches_datetime(
    moment: datetime, offset_minutes: int, digits: int, extra: int, style: str
) -> None:
    if style == "z":
        offset_minutes = 0
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{local.microsecond:06d}{extra:03d}"[:digits]
    if digits:
        text += "." + fraction
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    if style == "z":
        text += "Z"
    elif style == "colon":
        text += f"{sign}{hours:02d}:{minutes:02d}"
    else:
        text += f"{sign}{hours:02d}{minutes:02d}"
    truncated = local.replace(microsecond=int((fraction + "000000")[:6]) // 1000 * 1000)
    expected = int(truncated.replace(microsecond=0).timestamp()) * 1000 + truncated.microsecond // 1000
    assert parse_time_ms(text) == expected


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parse_time_ms_never_crashes_on_garbage(text: str) -> None:
    try:
        value = parse_time_ms(text)
    except ValueError:
        return
    assert isinstance(value, int)
