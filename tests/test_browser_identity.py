"""End to end in a real browser: headless Chromium runs a page with the real ``@segment/analytics-next``
and ``@amplitude/analytics-browser`` (from npm, bundled locally); the page's own events reach the local
Segment collector, the page calls a Flask app that tracks server-side exposures with no identity set up,
and the exposures must carry the anonymousId (and userId, once identified) of the browser's own events.

Nothing leaves the machine: analytics.js gets its CDN settings from the collector and sends there,
Amplitude's SDK sends to the app, and Chromium resolves no host name but 127.0.0.1 (checked below).
If Chromium cannot start, the test fails and says why.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from segment_exposure import SegmentCollector

from .cdp import Chromium, ChromiumError
from .npm_support import BROWSER_DIR, require_npm_dir
from .prerequisites import require_chromium

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# The example app (examples/browser_identity/app.py) is what the browser talks to.
_spec = importlib.util.spec_from_file_location(
    "browser_identity_example", ROOT / "examples" / "browser_identity" / "app.py"
)
assert _spec is not None and _spec.loader is not None
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node = require_npm_dir(BROWSER_DIR)
    out = tmp_path_factory.mktemp("bundle") / "bundle.js"
    command = [
        node,
        str(BROWSER_DIR / "build.mjs"),
        str(ROOT / "examples/browser_identity/page.js"),
        str(out),
    ]
    subprocess.run(command, check=True, timeout=120)
    return out


@pytest.fixture
def served_app(bundle: Path) -> Iterator[tuple[str, SegmentCollector, Any]]:
    with SegmentCollector(example.WRITE_KEY) as collector:
        app = example.create_app(bundle=bundle, segment_url=collector.url)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="browser-example", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", collector, app
        finally:
            server.shutdown()
            thread.join(10)
            app.extensions["segment_exposure"].provider.shutdown(5)


def test_server_side_exposures_carry_the_browser_identity(
    served_app: tuple[str, SegmentCollector, Any],
) -> None:
    url, collector, app = served_app
    require_chromium()
    started = time.monotonic()
    try:
        with Chromium() as browser:
            browser.open(url + "/")
            result = browser.evaluate("window.EXAMPLE_RESULT", timeout=120)
            requests = list(browser.requests)
    except ChromiumError as exc:
        pytest.fail(str(exc))
    browser_seconds = time.monotonic() - started

    # Nothing left the machine.
    outside = [u for u in requests if not u.startswith(("http://127.0.0.1:", "data:", "about:", "blob:"))]
    assert outside == []

    browser_ids = result["browser"]
    anonymous_id = browser_ids["anonymousId"]
    assert anonymous_id and browser_ids["userId"] == example.USER_ID

    # The browser's own events, as the collector received them from analytics.js.
    assert collector.wait_for(3, timeout=60)  # page, identify, track
    assert app.extensions["segment_exposure"].provider.flush(30)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for message in collector.unique_messages().values():
        by_type.setdefault(message.get("type") or "track", []).append(message)
    [page] = by_type["page"]
    assert page["anonymousId"] == anonymous_id and page.get("userId") is None
    [identify] = by_type["identify"]
    assert (identify["anonymousId"], identify["userId"]) == (anonymous_id, example.USER_ID)
    [browser_track] = [m for m in by_type["track"] if m["event"] == "Checkout Viewed"]

    # The server-side exposures, tracked with no user given: on the browser's identity.
    exposures = {m["properties"]["flag_key"]: m for m in collector.events("$exposure")}
    assert set(exposures) == {"checkout-anonymous", "checkout-identified"}
    before_login = exposures["checkout-anonymous"]
    assert (before_login["anonymousId"], before_login["userId"]) == (page["anonymousId"], None)
    after_login = exposures["checkout-identified"]
    assert (after_login["anonymousId"], after_login["userId"]) == (
        browser_track["anonymousId"],
        browser_track["userId"],
    )
    # The request's context, as the browser's own events carry it.
    assert after_login["context"]["userAgent"] == page["context"]["userAgent"]
    assert after_login["context"]["locale"] == page["context"]["locale"]
    assert after_login["context"]["ip"] == "127.0.0.1"

    # Amplitude's Browser SDK cookie, read by from_cookies, gives the SDK's own ids.
    assert result["server"]["amplitudeCookie"] == {
        "device_id": browser_ids["amplitudeDeviceId"],
        "user_id": browser_ids["amplitudeUserId"],
    }
    print(f"browser part: {browser_seconds:.1f}s")


def test_collector_speaks_analytics_js() -> None:
    """What the browser test relies on, without a browser: CDN settings, CORS, single-event posts."""
    import requests

    with SegmentCollector("wk-browser-1") as collector:
        settings = requests.get(f"{collector.url}/v1/projects/wk-browser-1/settings", timeout=10).json()
        segment_io = settings["integrations"]["Segment.io"]
        assert f"{segment_io['protocol']}://{segment_io['apiHost']}" == collector.url + "/v1"
        assert requests.get(f"{collector.url}/v1/projects/other-key/settings", timeout=10).status_code == 404
        preflight = requests.options(
            collector.url + "/v1/t",
            headers={
                "Origin": "http://127.0.0.1:1",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
            timeout=10,
        )
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:1"
        assert preflight.headers["Access-Control-Allow-Headers"] == "authorization,content-type"
        event = {"type": "track", "event": "Clicked", "anonymousId": "anon-12345", "messageId": "m-1"}
        refused = requests.post(collector.url + "/v1/t", data=json.dumps(event), timeout=10)
        assert refused.status_code == 401  # no write key
        accepted = requests.post(
            collector.url + "/v1/t",
            data=json.dumps({**event, "writeKey": "wk-browser-1"}),
            headers={"Content-Type": "text/plain", "Origin": "http://127.0.0.1:1"},
            timeout=10,
        )
        assert accepted.status_code == 200 and accepted.headers["Access-Control-Allow-Origin"]
        assert [m["event"] for m in collector.events("Clicked")] == ["Clicked"]
