"""Reading Segment's loosely typed values (``coerce``) and user agents (``useragent``).

The readers must agree with JavaScript (Segment's destination and our Segment Function run on Node), so the
number-to-string rule is checked against Node itself; the date and session rules are pinned by what
Segment's destination was observed to do (the parity test runs the destination on the whole corpus).
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from typing import Any

import pytest

from segment_exposure.delivery.coerce import (
    js_string,
    read_number,
    read_session_id,
    read_string,
    read_time_ms,
)
from segment_exposure.delivery.useragent import available, parse_user_agent

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)


def _numbers() -> list[float]:
    rng = random.Random(12)
    values: list[float] = [0.5, -0.5, 1e21, 1e-7, 1.5e-7, 123e-20, 2**53, 2**53 + 2, 2**60, 1e300, 5e-324]
    values += [123456.0, 0.1 + 0.2, 1 / 3, -(10**15) - 0.5, 12345678901234567890.0]
    for _ in range(300):
        values.append(rng.uniform(-1, 1) * 10 ** rng.randint(-12, 25))
        values.append(float(rng.randint(-(2**60), 2**60)))
    return values


def test_numbers_become_the_strings_javascript_makes_of_them() -> None:
    """Segment's validator coerces a numeric id with String(x): the same digits here, checked on Node."""
    values = _numbers()
    script = (
        "const xs = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(xs.map(String)))"
    )
    done = subprocess.run(
        ["node", "-e", script],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    expected = json.loads(done.stdout)
    assert [js_string(v) for v in values] == expected
    big = 12345678901234567890
    assert js_string(big) == "12345678901234567000"  # an int past 2**53 is read as JavaScript holds it


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T10:00:00.123Z", 1795514400123),
        ("2026-11-24T10:00:00", 1795514400000),  # no zone: UTC, as Segment (dayjs.utc) reads it
        ("2026-11-24", 1795478400000),
        ("2026-11-24T10:00Z", 1795514400000),
        ("2026-11-24 10:00:00Z", 1795514400000),
        ("2026-11-24t10:00:00z", 1795514400000),
        ("2026-11-24T10:00:00.123456789Z", 1795514400123),
        ("2026-11-24T10:00:00+0200", 1795507200000),
        ("2026-11-24T10:00:00-05:30", 1795534200000),
        ("2026-11-24T10:00:00+02", 1795507200000),  # Segment's validator refuses it; we read it
        ("2026-11-24T10:00:00,5Z", 1795514400500),  # likewise
        ("2026-02-30T10:00:00Z", 1772445600000),  # rolls over into March, as JavaScript does
        ("2026-11-24T24:00:00Z", 1795564800000),
        ("Tue, 24 Nov 2026 10:00:00 GMT", 1795514400000),
        ("1969-12-31T23:59:59.999Z", -1),
        ("1970-01-01T00:00:00Z", 0),
        (1795514400123, 1795514400123),
        (1.5, 1),
        (-1, -1),
        (0, None),  # falsy: Segment sends no time
        ("", None),
        ("yesterday", None),
        ("1795514400123", None),  # Segment's date parser misreads digit strings; we do not guess
        ("2026-11-24T10:00:60Z", None),
        ("2026-13-01T00:00:00Z", None),
        (True, None),
        (math.inf, None),
        (8.64e15 + 1, None),
        ({"at": 1}, None),
    ],
)
def test_times_are_read_as_segment_reads_them(value: Any, expected: int | None) -> None:
    assert read_time_ms(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795514300000, 1795514300000),
        ("1795514300000", 1795514300000),
        ("00012", 12),
        ("0", 0),
        (0, None),
        (-1, -1),
        (1795514300000.7, 1795514300000),
        ("2026-11-24T10:00:00Z", 1795514400000),
        ("2026-11-24", 1795478400000),
        ("-5", None),
        ("12345678901234567890", None),  # beyond 2**53: JavaScript cannot hold it exactly
        ("7" * 5000, None),
        (1e20, None),
        (True, None),
        ([1], None),
    ],
)
def test_session_ids_are_converted_as_segment_converts_them(value: Any, expected: int | None) -> None:
    assert read_session_id(value) == expected


def test_strings_and_numbers_are_coerced_as_segments_validator_does() -> None:
    assert [read_string(v) for v in ("a", "", 42, 4.2, True, False, None, [1], {"a": 1}, math.nan)] == [
        "a",
        "",
        "42",
        "4.2",
        "true",
        "false",
        None,
        None,
        None,
        None,
    ]
    assert [read_number(v) for v in (37.5, "37.5", " 12 ", "1e3", "-122.25", "north", "", "inf", True)] == [
        37.5,
        37.5,
        12,
        1000,
        -122.25,
        None,
        None,
        None,
        None,
    ]


def test_user_agents_give_segments_fields() -> None:
    assert available()
    assert parse_user_agent(CHROME_WINDOWS) == {
        "os_name": "Windows",
        "os_version": "131",
        "device_model": "Windows",
    }
    assert parse_user_agent(IPHONE) == {
        "os_name": "iOS",
        "os_version": "17",
        "device_manufacturer": "Apple",
        "device_model": "iPhone",
        "device_type": "mobile",
    }
    hints = {"platformVersion": "15.0.0", "model": "Surface"}
    assert parse_user_agent(CHROME_WINDOWS, hints)["os_version"] == "15.0.0"
    assert parse_user_agent(CHROME_WINDOWS, hints)["device_model"] == "Surface"
    assert (
        parse_user_agent(" " * 400 + CHROME_WINDOWS)["os_name"] == "Windows"
    )  # cut as Segment's parser cuts
    assert parse_user_agent("") == {}


def test_without_the_extra_user_agents_are_not_parsed_and_it_says_which_extra() -> None:
    code = (
        "import sys, logging; sys.modules['uaparser'] = None  # as if it were not installed\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from segment_exposure.delivery.translate import to_amplitude_event\n"
        "event = {'type': 'track', 'event': '$exposure', 'anonymousId': 'anon-12345',\n"
        "         'properties': {'flag_key': 'f'}, 'timestamp': '2026-11-24T10:00:00Z',\n"
        f"         'context': {{'library': {{'name': 'analytics.js'}}, 'userAgent': {IPHONE!r}}}}}\n"
        "print(sorted(to_amplitude_event(event)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert (
        done.stdout.strip()
        == "['device_id', 'event_properties', 'event_type', 'library', 'platform', 'time']"
    )
    assert "pip install 'segment-exposure[useragent]'" in done.stderr
