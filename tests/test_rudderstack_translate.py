"""RudderStack's events through the destination, mapped as RudderStack's own Amplitude destination maps them.

The one table of differences (``segment_exposure.delivery.sources.SOURCE_DIFFERENCES``) is enforced both ways:
over RudderStack events of every channel, the Segment and RudderStack mappings differ only in the fields the
table lists, and every row is needed by some event. The Segment Function maps the same events identically
(Node, tests/js/harness.mjs), and real rudder-sdk-python traffic reaches Amplitude through the destination.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from segment_exposure import AmplitudeExposureDestination, to_amplitude_event
from segment_exposure.delivery.sources import (
    SOURCE_DIFFERENCES,
    SOURCES,
    detect_source,
    differences_table,
)
from segment_exposure.server.settings import ConfigError, ServerSettings
from segment_exposure.testing import AmplitudeEmulator, RudderStackCollector

from .test_function_js import js_settings, python_outcome, run_js

WEB_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)


def _base(**extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "event": "$exposure",
        "messageId": "rs-msg-000001",
        "anonymousId": "anon-rs-000001",
        "userId": "user-rs-000001",
        "timestamp": "2026-11-24T10:00:00.123Z",
        "sentAt": "2026-11-24T10:00:01.000Z",
        "receivedAt": "2026-11-24T10:00:01.100Z",
        "rudderId": "8f1f0f1e-0000-4000-8000-000000000001",
        "request_ip": "203.0.113.7",
        "properties": {"flag_key": "checkout", "variant": "treatment", "experiment_key": "exp-1"},
        "integrations": {"All": True},
    }
    event.update(extra)
    return event


#: RudderStack events as its data plane delivers them: JS SDK on the web, the Python SDK, a mobile SDK.
EVENTS: dict[str, dict[str, Any]] = {
    "web": _base(
        channel="web",
        context={
            "library": {"name": "RudderLabs JavaScript SDK", "version": "3.7.0"},
            "userAgent": WEB_UA,
            "sessionId": 1795514300123,
            "sessionStart": True,
            "device": {"id": "device-web-00001"},
            "locale": "en-US",
            "page": {"referrer": "https://example.com/"},
        },
    ),
    "web on iPhone": _base(
        channel="web",
        context={
            "library": {"name": "RudderLabs JavaScript SDK", "version": "3.7.0"},
            "userAgent": IPHONE_UA,
            "sessionId": "1795514300123",
            "ip": "198.51.100.4",
        },
    ),
    "server": _base(
        channel="server",
        # a backend forwarding its visitor's user agent: Segment's mapping parses it, RudderStack's does not
        context={"library": {"name": "analytics-python", "version": "2.1.9"}, "userAgent": WEB_UA},
    ),
    "mobile": _base(
        channel="mobile",
        context={
            "library": {"name": "com.rudderstack.android.sdk.core", "version": "1.20.0"},
            "device": {"id": "android-device-0001", "type": "android", "model": "Pixel 8"},
            "os": {"name": "Android", "version": "14"},
            "userAgent": "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/UD1A.230803.041)",
            "sessionId": -1,
        },
    ),
}


def _fields(row_field: str) -> set[str]:
    return {name.strip() for name in row_field.split(",")}


def test_the_mappings_differ_only_where_the_table_says_and_every_row_is_needed() -> None:
    listed = set().union(*(_fields(row.field) for row in SOURCE_DIFFERENCES))
    needed: set[str] = set()
    for name, event in EVENTS.items():
        segment = to_amplitude_event(event, source="segment")
        rudder = to_amplitude_event(event, source="rudderstack")
        differing = {k for k in set(segment) | set(rudder) if segment.get(k) != rudder.get(k)}
        assert differing <= listed, f"{name}: {differing - listed} differ but are not in SOURCE_DIFFERENCES"
        needed |= differing
    unused = [row.field for row in SOURCE_DIFFERENCES if not _fields(row.field) & needed]
    assert not unused, f"rows no event needs: {unused}"


def test_web_event_is_mapped_as_rudderstack_maps_it() -> None:
    out = to_amplitude_event(EVENTS["web"])  # auto
    assert out["platform"] == "Web"
    assert out["ip"] == "203.0.113.7", "request_ip, as context.ip is absent"
    assert out["session_id"] == 1795514300123
    assert out["library"] == "rudderstack"
    assert out["device_id"] == "anon-rs-000001", "anonymousId before context.device.id"
    assert out["insert_id"] == "rs-msg-000001"
    assert out["time"] == 1795514400123, "timestamp"
    assert out["os_name"] == "Windows" and out["os_version"] == "120"
    assert not {"device_model", "device_manufacturer", "device_type"} & set(out)
    iphone = to_amplitude_event(EVENTS["web on iPhone"])
    assert iphone["ip"] == "198.51.100.4", "context.ip first"
    assert iphone["session_id"] == 1795514300123, "a digit string read as its number"


def test_other_channels_get_no_user_agent_fields_and_no_web_platform() -> None:
    mobile = to_amplitude_event(EVENTS["mobile"])
    assert mobile["platform"] == "Android" and mobile["os_name"] == "Android" and mobile["os_version"] == "14"
    assert mobile["device_model"] == "Pixel 8", "from the context, as ever"
    assert "session_id" not in mobile, "-1 is RudderStack's 'no session'"
    assert "device_type" not in mobile
    server = to_amplitude_event(EVENTS["server"])
    assert "platform" not in server and server["library"] == "rudderstack" and server["ip"] == "203.0.113.7"
    assert "os_name" not in server and to_amplitude_event(EVENTS["server"], source="segment")["os_name"]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"rudderId": "x"}, "rudderstack"),
        ({"request_ip": "203.0.113.7"}, "rudderstack"),
        ({"context": {"library": {"name": "RudderLabs JavaScript SDK"}}}, "rudderstack"),
        ({"channel": "web"}, "segment"),  # Segment sets a channel too: not a signal alone
        ({"channel": "server", "context": {"library": {"name": "analytics-python"}}}, "segment"),
        ({"rudderId": None}, "segment"),
        ({}, "segment"),
    ],
)
def test_the_detection_rule(event: dict[str, Any], expected: str) -> None:
    assert detect_source(event) == expected


def test_forcing_a_mapping_and_refusing_unknown_sources() -> None:
    web = EVENTS["web"]
    assert to_amplitude_event(web, source="segment")["library"] == "RudderLabs JavaScript SDK"
    plain = {k: v for k, v in web.items() if k not in ("rudderId", "request_ip")}
    plain["context"] = {**web["context"], "library": {"name": "analytics.js"}}
    assert to_amplitude_event(plain)["library"] == "analytics.js"
    assert to_amplitude_event(plain, source="rudderstack")["library"] == "rudderstack"
    with pytest.raises(ValueError, match="source must be one of auto, segment, rudderstack"):
        to_amplitude_event(web, source="mparticle")
    with pytest.raises(ValueError, match="source"):
        AmplitudeExposureDestination("key-0123456789", source="Segment ")
    settings = ServerSettings.from_environ({"AMPLITUDE_API_KEY": "k" * 12, "EVENT_SOURCE": " RudderStack "})
    assert settings.source == "rudderstack" and settings.build_destination().source == "rudderstack"
    with pytest.raises(ConfigError, match="EVENT_SOURCE must be one of"):
        ServerSettings.from_environ({"AMPLITUDE_API_KEY": "k" * 12, "EVENT_SOURCE": "mparticle"})


def test_the_table_renders_for_the_docs() -> None:
    table = differences_table()
    assert table.count("\n") == len(SOURCE_DIFFERENCES) + 1
    assert "`request_ip`" in table and "`context.sessionId`" in table


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("parsing", [False, True], ids=["no user-agent parsing", "user-agent parsing"])
def test_the_function_maps_rudderstack_events_as_python_does(parsing: bool) -> None:
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for event in EVENTS.values():
        for source in SOURCES:
            cases.append((copy.deepcopy(event), {"source": source, "user_agent_parsing": parsing}))
    (result,) = run_js(
        [{"op": "translate", "cases": [{"event": e, "settings": js_settings(o)} for e, o in cases]}]
    )
    for (event, options), js in zip(cases, result["outputs"], strict=True):
        # These user agents are parsed alike by both parsers (ua-parser-py and @amplitude/ua-parser-js).
        assert js == python_outcome(event, options), (event["channel"], options)


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={"amp-rs-key-0a1b2c3d4e"}) as emulator:
        yield emulator


def test_real_rudderstack_traffic_reaches_amplitude_through_the_destination(
    amplitude: AmplitudeEmulator,
) -> None:
    analytics = pytest.importorskip("rudderstack.analytics", reason="the rudderstack extra is not installed")
    with RudderStackCollector("rs-write-key") as collector:
        client = analytics.Client("rs-write-key", host=collector.url, upload_interval=0.05)
        for i in range(3):
            client.track(
                user_id=f"user-rs-{i:05d}",
                event="$exposure",
                properties={"flag_key": "checkout", "variant": "treatment"},
                message_id=f"rs-{i}",
            )
        client.flush()
        client.shutdown()
        assert collector.wait_for(3)
        # What the data plane adds before delivering to a destination (it is not on the SDK's wire).
        delivered = [
            {**m, "rudderId": f"rid-{m['messageId']}", "request_ip": "203.0.113.9"}
            for m in collector.events()
        ]
    with AmplitudeExposureDestination(
        "amp-rs-key-0a1b2c3d4e", endpoint=amplitude.http_api_url
    ) as destination:
        statuses = destination.on_batch(delivered)
    assert [s["status"] for s in statuses] == [200, 200, 200]
    ingested = sorted(amplitude.ingested, key=lambda e: e["insert_id"])
    assert [e["insert_id"] for e in ingested] == ["rs-0", "rs-1", "rs-2"]
    assert {e["library"] for e in ingested} == {"rudderstack"}
    assert {e["ip"] for e in ingested} == {"203.0.113.9"}
    assert all("platform" not in e for e in ingested), "a server channel has no platform"


def test_doctor_holds_rudderstack_events_to_rudderstacks_mapping() -> None:
    """RudderStack's mapping takes anonymousId as the device id: another context.device.id is fine."""
    import io
    import json

    from segment_exposure.cli.doctor import audit

    lines = "\n".join(json.dumps(e) for e in (EVENTS["web"], EVENTS["mobile"])) + "\n"
    checks = {f.check for f in audit(io.StringIO(lines))[0]}
    assert "device_id_mismatch" not in checks
    forced = {f.check for f in audit(io.StringIO(lines), events_source="segment")[0]}
    assert "device_id_mismatch" in forced
