"""Server-side exposures on the browser's own identity: a page running Segment's analytics.js and
Amplitude's Browser SDK calls a Flask app, whose exposures carry the browser's anonymousId and userId.

    npm ci --prefix tests/js/browser --no-audit --no-fund     # once: the SDKs and esbuild, from npm
    python examples/browser_identity/app.py                   # then open the printed URL in a browser
    python examples/browser_identity/app.py --demo            # or let headless Chromium open it

Everything stays on this machine: the page loads the SDKs from this app (bundled from npm), analytics.js
gets its settings from, and sends its events to, a local Segment collector, and Amplitude's SDK sends
to a local sink. The app sets no identity up: segment-exposure reads the browser's cookies.
``tests/test_browser_identity.py`` runs this page in headless Chromium and checks both sides agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, jsonify, request

from segment_exposure import (
    Exposure,
    SegmentCollector,
    SegmentExposure,
    bound_user,
    from_cookies,
    identity_from_user,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NPM_DIR = ROOT / "tests" / "js" / "browser"
WRITE_KEY = "browser-example-write-key"
AMPLITUDE_API_KEY = "0123456789abcdef0123456789abcdef"  # a made-up key: it only names the cookie
USER_ID = "user-example-0042"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>running</title>
<script>window.EXAMPLE_CONFIG = {config};</script>
<script src="/static/bundle.js"></script></head>
<body><h1>segment-exposure: the browser's identity on server-side exposures</h1>
<pre id="result">running...</pre></body></html>
"""


def build_bundle(outfile: Path) -> Path:
    """Bundle page.js with the SDKs from npm (needs ``npm ci --prefix tests/js/browser`` first)."""
    if not (NPM_DIR / "node_modules").is_dir():
        raise SystemExit(f"run first: npm ci --prefix {NPM_DIR.relative_to(ROOT)} --no-audit --no-fund")
    outfile.parent.mkdir(parents=True, exist_ok=True)
    command = ["node", str(NPM_DIR / "build.mjs"), str(HERE / "page.js"), str(outfile)]
    subprocess.run(command, check=True, timeout=120)
    return outfile


def create_app(*, bundle: Path, segment_url: str, amplitude_url: str | None = None) -> Flask:
    """The app: the page, its bundle, and two API routes that track exposures with no user given."""
    app = Flask(__name__)
    app.config.update(
        SEGMENT_EXPOSURE_WRITE_KEY=WRITE_KEY,
        SEGMENT_EXPOSURE_HOST=segment_url,
        SEGMENT_EXPOSURE_AMPLITUDE_API_KEY=AMPLITUDE_API_KEY,
        SEGMENT_EXPOSURE_CLIENT_OPTIONS={"upload_interval": 0.05},
    )
    SegmentExposure(app)
    received: list[Any] = []
    app.config["AMPLITUDE_RECEIVED"] = received

    @app.get("/")
    def page() -> Response:
        config = {
            "writeKey": WRITE_KEY,
            "cdnURL": segment_url,  # analytics.js reads /v1/projects/<write key>/settings here
            "amplitudeApiKey": AMPLITUDE_API_KEY,
            "amplitudeServerUrl": amplitude_url or request.host_url + "amplitude/2/httpapi",
            "userId": USER_ID,
        }
        # JSON in a <script>: escape "<" so no value can close the tag.
        text = PAGE.replace("{config}", json.dumps(config).replace("<", "\\u003c"))
        return Response(text, mimetype="text/html")

    @app.get("/static/bundle.js")
    def bundle_js() -> Response:
        return Response(bundle.read_bytes(), mimetype="text/javascript")

    @app.get("/api/checkout")
    def checkout() -> Any:
        flag = request.args.get("flag", "checkout")
        provider = current_app.extensions["segment_exposure"].provider
        tracked = provider.track(Exposure(flag, "treatment", "exp-browser-1"))  # no user: the request's
        user_id, device_id = identity_from_user(bound_user())
        return jsonify(flag=flag, tracked=tracked, user_id=user_id, device_id=device_id)

    @app.get("/api/amplitude-cookie")
    def amplitude_cookie() -> Any:
        """What from_cookies makes of the cookie Amplitude's Browser SDK set."""
        return jsonify(
            from_cookies(request.cookies, amplitude_api_key=AMPLITUDE_API_KEY, sources=["amplitude"])
        )

    @app.post("/amplitude/2/httpapi")
    def amplitude_sink() -> Any:
        """A local stand-in for Amplitude's ingestion, so the SDK's events stay on this machine."""
        body = request.get_json(force=True, silent=True) or {}
        events = body.get("events") or []
        received.extend(events)
        return jsonify(code=200, events_ingested=len(events), payload_size_bytes=len(request.data))

    return app


def demo() -> dict[str, Any]:
    """Serve the page, open it in headless Chromium, and report what each side saw."""
    sys.path.insert(0, str(ROOT))
    from werkzeug.serving import make_server

    from tests.cdp import Chromium  # the repository's small DevTools-protocol driver

    with SegmentCollector(WRITE_KEY) as collector, tempfile.TemporaryDirectory() as tmp:
        app = create_app(bundle=build_bundle(Path(tmp) / "bundle.js"), segment_url=collector.url)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with Chromium() as browser:
                browser.open(f"http://127.0.0.1:{server.server_port}/")
                result = browser.evaluate("window.EXAMPLE_RESULT", timeout=120)
        finally:
            server.shutdown()
            thread.join(10)
        provider = app.extensions["segment_exposure"].provider
        provider.flush(30)
        collector.wait_for(5, timeout=30)  # page, identify, track, and the two exposures
        provider.shutdown(5)
        messages = collector.unique_messages().values()
        pages = [m for m in messages if m.get("type") == "page"]
        exposures = [m for m in messages if m.get("event") == "$exposure"]
    return {
        "browser": result["browser"],
        "page_event": [{"anonymousId": m["anonymousId"], "userId": m.get("userId")} for m in pages],
        "exposures": [
            {"flag": m["properties"]["flag_key"], "anonymousId": m["anonymousId"], "userId": m["userId"]}
            for m in exposures
        ],
        "amplitude_cookie": result["server"]["amplitudeCookie"],
    }


def main() -> None:
    if "--demo" in sys.argv[1:]:
        print(json.dumps(demo(), indent=2))
        return
    collector = SegmentCollector(WRITE_KEY).start()
    bundle = build_bundle(HERE / "build" / "bundle.js")
    app = create_app(bundle=bundle, segment_url=collector.url)
    port = int(os.environ.get("PORT", "5000"))
    print(f"open http://127.0.0.1:{port}/ (Segment collector at {collector.url})", file=sys.stderr)
    app.run("127.0.0.1", port)


if __name__ == "__main__":
    main()
