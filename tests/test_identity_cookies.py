"""``from_cookies``: the browser's own ids from Segment's and Amplitude's cookies, and nothing else.

Both stored forms of analytics.js's cookies; Amplitude's SDK 2.x and legacy cookies compared with
Amplitude's own ``AmplitudeCookie`` (``@amplitude/experiment-node-server``) under Node, including values
its ``generate()`` made; and hostile values, which must be ignored without raising.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segment_exposure import from_cookies
from segment_exposure.identity.browser_cookies import amplitude_ids, ignored_cookie_values
from segment_exposure.identity.ids import MAX_ID_LENGTH, browser_id

from .npm_support import BROWSER_DIR, run_node

API_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
AMP_NEW = "AMP_" + API_KEY[:10]
AMP_LEGACY = "amp_" + API_KEY[:6]
ANON = "38c9a8e2-5a1f-4d6b-9c3e-1f2a3b4c5d6e"


def classic(value: str) -> str:
    """How analytics.js classic stores an id: JSON-encoded, then URL-encoded."""
    return quote(json.dumps(value), safe="")


def sdk2(session: dict[str, Any], *, url_encoded: bool = False) -> str:
    """How @amplitude/analytics-browser 2.x stores its session: base64 of URL-encoded JSON."""
    value = base64.b64encode(quote(json.dumps(session), safe="~()*!.'").encode()).decode()
    return quote(value, safe="") if url_encoded else value


def legacy(device_id: str, user_id: str | None = None) -> str:
    """amplitude-js 8: deviceId.base64(userId).optOut.sessionId.lastEventTime.eventId.sequenceNumber"""
    encoded = base64.b64encode(user_id.encode()).decode() if user_id else ""
    return f"{device_id}.{encoded}.0.1764500000000.1764500001000.3.7"


# -- Segment ----------------------------------------------------------------------------------------


def test_segment_classic_form_is_url_encoded_json() -> None:
    cookies = {"ajs_anonymous_id": classic(ANON), "ajs_user_id": classic("user-42")}
    assert cookies["ajs_anonymous_id"].startswith("%22")
    assert from_cookies(cookies) == {"device_id": ANON, "user_id": "user-42"}


def test_segment_next_form_is_the_plain_value() -> None:
    assert from_cookies({"ajs_anonymous_id": ANON, "ajs_user_id": "user-42"}) == {
        "device_id": ANON,
        "user_id": "user-42",
    }


def test_segment_user_id_with_cookie_escapes() -> None:
    # js-cookie (analytics-next) URL-encodes what a cookie cannot hold; classic JSON-encodes first.
    assert from_cookies({"ajs_user_id": "jane%20doe%2Bx%40example.com"}) == {
        "user_id": "jane doe+x@example.com"
    }
    assert from_cookies({"ajs_user_id": classic('ann "the" user')}) == {"user_id": 'ann "the" user'}


def test_only_what_is_found_is_returned() -> None:
    assert from_cookies({"ajs_anonymous_id": ANON}) == {"device_id": ANON}
    assert from_cookies({}) is None
    assert from_cookies({"session": "abc"}) is None


# -- Amplitude --------------------------------------------------------------------------------------


def test_amplitude_sdk2_cookie_needs_the_api_key() -> None:
    cookies = {AMP_NEW: sdk2({"deviceId": ANON, "userId": "user-42", "sessionId": 1764500000000})}
    assert from_cookies(cookies) is None
    assert from_cookies(cookies, amplitude_api_key=API_KEY) == {"device_id": ANON, "user_id": "user-42"}


def test_amplitude_sdk2_cookie_url_encoded_too() -> None:
    value = sdk2({"deviceId": ANON, "optOut": False}, url_encoded=True)
    assert from_cookies({AMP_NEW: value}, amplitude_api_key=API_KEY) == {"device_id": ANON}


def test_amplitude_legacy_cookie() -> None:
    cookies = {AMP_LEGACY: legacy(ANON, "jürgen@example.com")}
    assert from_cookies(cookies, amplitude_api_key=API_KEY) == {
        "device_id": ANON,
        "user_id": "jürgen@example.com",
    }
    assert from_cookies({AMP_LEGACY: legacy(ANON)}, amplitude_api_key=API_KEY) == {"device_id": ANON}


def test_sdk2_cookie_wins_over_the_legacy_one() -> None:
    cookies = {AMP_NEW: sdk2({"deviceId": "new-device-1"}), AMP_LEGACY: legacy("old-device-1", "old-user")}
    assert from_cookies(cookies, amplitude_api_key=API_KEY) == {
        "device_id": "new-device-1",
        "user_id": "old-user",
    }


# -- order ------------------------------------------------------------------------------------------


def test_segment_comes_first_by_default_and_the_order_is_configurable() -> None:
    cookies = {
        "ajs_anonymous_id": ANON,
        AMP_NEW: sdk2({"deviceId": "amplitude-device", "userId": "amplitude-user"}),
    }
    both = from_cookies(cookies, amplitude_api_key=API_KEY)
    assert both == {"device_id": ANON, "user_id": "amplitude-user"}
    assert from_cookies(cookies, amplitude_api_key=API_KEY, sources=("amplitude", "segment")) == {
        "device_id": "amplitude-device",
        "user_id": "amplitude-user",
    }
    assert from_cookies(cookies, amplitude_api_key=API_KEY, sources=("segment",)) == {"device_id": ANON}


# -- hostile values ---------------------------------------------------------------------------------

HOSTILE = [
    "",
    "%22%22",
    "null",
    "%22null%22",
    "undefined",
    "%7B%7D",  # {}
    "%5B%22abcdef%22%5D",  # ["abcdef"]
    "12345%",
    "%ff%fe%fd%fc%fb",  # URL-encoded bytes that are not UTF-8
    "%22abc",  # an unterminated JSON string, URL-encoded
    '"not json\\',
    "abc",  # shorter than Amplitude's minimum of 5
    "00000000-0000-0000-0000-000000000000",
    "x" * (MAX_ID_LENGTH + 1),
    "y" * 100_000,
    "line\r\nbreak-injected",
    "tab\tinside-1",
    "%0d%0aSet-Cookie:%20x=1",
    " padded-id ",
    "\x00nul-byte-1",
    "%22\\u0000nul-in-json%22",
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_segment_values_are_ignored(value: str, caplog: pytest.LogCaptureFixture) -> None:
    before = ignored_cookie_values()
    with caplog.at_level(logging.DEBUG, "segment_exposure"):
        assert from_cookies({"ajs_anonymous_id": value, "ajs_user_id": value}) is None
    if value:
        assert ignored_cookie_values() == before + 2  # counted, once per cookie
        assert all(value not in r.getMessage() for r in caplog.records if len(value) > 3)  # never logged


HOSTILE_AMPLITUDE = [
    "not base64 at all!",
    base64.b64encode(b"\xff\xfe not utf-8").decode(),
    base64.b64encode(b"not-url-encoded-json").decode(),
    sdk2([ANON]),  # type: ignore[arg-type]
    sdk2({"deviceId": 1234567}),
    sdk2({"deviceId": "null", "userId": ""}),
    sdk2({"deviceId": {"nested": ANON}}),
    sdk2({"deviceId": "x" * 300}),
    "A" * 5000,
]


@pytest.mark.parametrize("value", HOSTILE_AMPLITUDE, ids=range(len(HOSTILE_AMPLITUDE)))
def test_hostile_amplitude_values_are_ignored(value: str) -> None:
    assert from_cookies({AMP_NEW: value, AMP_LEGACY: value}, amplitude_api_key=API_KEY) in (
        None,
        # a legacy cookie's first field is taken as it is, when it is an acceptable id
        {"device_id": value.split(".")[0]},
    )


def test_a_misbehaving_mapping_never_raises() -> None:
    class Broken(dict[str, str]):
        def get(self, *args: Any) -> Any:
            raise RuntimeError("boom")

    assert from_cookies(Broken()) is None


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["ajs_anonymous_id", "ajs_user_id", AMP_NEW, AMP_LEGACY, "other"]),
        st.one_of(st.text(max_size=300), st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode())),
    )
)
def test_no_cookie_value_raises_or_gives_an_id_amplitude_refuses(cookies: dict[str, str]) -> None:
    ids = from_cookies(cookies, amplitude_api_key=API_KEY)
    assert ids is None or (ids and set(ids) <= {"user_id", "device_id"})
    for value in (ids or {}).values():
        assert browser_id(value) == (value, None)


# -- the same values through Amplitude's own AmplitudeCookie, under Node ----------------------------

DEVICE_IDS = [ANON, str(uuid.uuid4()), "device-ä-ü-✓", "d" * 64, "abc", "null", "has space 1", "a.b.c.d.e"]


def valid_url_encoding(value: str) -> bool:
    try:
        unquote(value, errors="strict")
    except UnicodeDecodeError:
        return False
    return not re.search(r"%(?![0-9A-Fa-f]{2})", value)


def amplitude_corpus() -> list[tuple[str, bool]]:
    """(raw cookie value, SDK 2.x format?) pairs: well-formed, unusual and hostile."""
    values: list[tuple[str, bool]] = []
    for device_id in DEVICE_IDS:
        for user_id in (None, "user-42", "jürgen@example.com", "1"):
            session: dict[str, Any] = {"deviceId": device_id, "sessionId": 1764500000000, "optOut": False}
            if user_id:
                session["userId"] = user_id
            values += [(sdk2(session), True), (sdk2(session, url_encoded=True), True)]
            values.append((legacy(device_id, user_id), False))
    values += [(v, True) for v in HOSTILE_AMPLITUDE]
    values += [(v, False) for v in HOSTILE if "\x00" not in v]
    values += [
        (sdk2({"deviceId": ANON, "userId": None}), True),
        (sdk2({"userId": "only-user-1"}), True),
        (sdk2({"deviceId": 42, "userId": 4242424}), True),
        ("..........", False),
        (f"{ANON}", False),
        (f"{ANON}.!!!notbase64", False),
        (f".{base64.b64encode(b'user-only-9').decode()}", False),
    ]
    return values


@pytest.mark.slow
@pytest.mark.requires("npm:browser")
def test_from_cookies_agrees_with_amplitude_cookie_parse_under_node() -> None:
    corpus = amplitude_corpus()
    generate = [{"deviceId": d, "newFormat": fmt} for d in DEVICE_IDS for fmt in (True, False)]
    request = {"parse": [{"value": v, "newFormat": fmt} for v, fmt in corpus], "generate": generate}
    answer = json.loads(run_node(BROWSER_DIR, "amplitude_cookie.mjs", json.dumps(request)))
    # Amplitude's generate() output joins the corpus: parsed again by both, side by side.
    generated = [(v, g["newFormat"]) for v, g in zip(answer["generated"], generate, strict=True)]
    assert len(generated) == len(generate)
    again = json.loads(
        run_node(
            BROWSER_DIR,
            "amplitude_cookie.mjs",
            json.dumps({"parse": [{"value": v, "newFormat": fmt} for v, fmt in generated]}),
        )
    )
    cases = [*zip(corpus, answer["parsed"], strict=True), *zip(generated, again["parsed"], strict=True)]
    agreed = 0
    for (value, new_format), theirs in cases:
        assert "error" not in theirs, (value, theirs)
        name = AMP_NEW if new_format else AMP_LEGACY
        ours = amplitude_ids({name: value}, API_KEY)
        # Where Amplitude's parser returns an id Amplitude's API would refuse (too short, "null", not a
        # string, control characters), from_cookies leaves it out instead, and it ignores a value that
        # is not valid URL-encoding (Node's cookie parser falls back to the raw text): otherwise the
        # same ids.
        acceptable = valid_url_encoding(value)
        expected = {
            key: theirs[key]
            for key in ("device_id", "user_id")
            if acceptable and theirs[key] is not None and browser_id(theirs[key])[0] is not None
        }
        assert ours == expected, (value, new_format, theirs)
        agreed += bool(expected)
    assert agreed >= 60  # most of the corpus carries ids both sides found
    for (value, new_format), generate_input in zip(generated, generate, strict=True):
        device_id = generate_input["deviceId"]
        if browser_id(device_id)[0] is not None and not (not new_format and "." in device_id):
            name = AMP_NEW if new_format else AMP_LEGACY
            assert amplitude_ids({name: value}, API_KEY) == {"device_id": device_id}
