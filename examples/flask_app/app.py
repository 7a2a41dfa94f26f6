"""An experiment-driven Flask view, its exposures tracked through segment-exposure.

    python examples/flask_app/app.py           # serve on http://127.0.0.1:5000 (PORT overrides)
    python examples/flask_app/app.py --demo    # a few requests through Flask's test client, then a summary
    gunicorn --chdir examples/flask_app 'app:create_app()'

The view asks Amplitude Experiment for the user's variant through ``ExposureTrackingClient``, which
tracks the exposure. With AMPLITUDE_DEPLOYMENT_KEY set, flags come from Amplitude; without it, from a
local flag server with the bundled demo flags. With SEGMENT_WRITE_KEY set, exposures go to Segment
(SEGMENT_HOST overrides the API host); without it, to a local Segment collector. Both local servers
start once per process (under gunicorn --preload: in the master, which keeps serving them).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

from amplitude_experiment import LocalEvaluationClient, LocalEvaluationConfig
from flask import Flask, current_app, g, jsonify, session

from segment_exposure import (
    ExposureTrackingClient,
    FlagConfigServer,
    SegmentCollector,
    SegmentExposure,
    bound_user,
    demo_flags,
    identity_from_user,
)

FLAG = "checkout-flow"
LOCAL_WRITE_KEY = "local-write-key"

_collector: SegmentCollector | None = None
_flag_server: FlagConfigServer | None = None
_experiments: dict[int, ExposureTrackingClient] = {}
_lock = threading.Lock()


def local_collector() -> SegmentCollector:
    """The local stand-in for Segment, started once per process (under gunicorn --preload: the master)."""
    global _collector
    if _collector is None:
        _collector = SegmentCollector(LOCAL_WRITE_KEY, on_batch=_announce).start()
    return _collector


def _announce(batch: list[dict[str, Any]]) -> None:
    users = ", ".join(str(m.get("userId") or m.get("anonymousId")) for m in batch)
    print(f"local Segment collector: {len(batch)} event(s) for {users}", file=sys.stderr, flush=True)


def local_flag_server() -> FlagConfigServer:
    """The local stand-in for Amplitude Experiment's flag configs, started once per process."""
    global _flag_server
    if _flag_server is None:
        _flag_server = FlagConfigServer(flags=demo_flags()).start()
    return _flag_server


def experiment() -> ExposureTrackingClient:
    """This process's Experiment client, made on first use.

    Per process, because LocalEvaluationClient polls for flag changes on a thread, and threads do not
    survive gunicorn's fork: each worker starts its own.
    """
    pid = os.getpid()
    with _lock:
        client = _experiments.get(pid)
        if client is None:
            key = os.environ.get("AMPLITUDE_DEPLOYMENT_KEY")
            if key:
                local = LocalEvaluationClient(key, LocalEvaluationConfig())
            else:
                server = local_flag_server()
                local = LocalEvaluationClient(
                    server.deployment_key, LocalEvaluationConfig(server_url=server.url)
                )
            local.start()
            client = ExposureTrackingClient(local, current_app.extensions["segment_exposure"].provider)
            _experiments[pid] = client
    return client


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("FLASK_SECRET_KEY", "dev-only-not-secret")
    write_key = os.environ.get("SEGMENT_WRITE_KEY")
    host = os.environ.get("SEGMENT_HOST")
    if not write_key:
        write_key, host = LOCAL_WRITE_KEY, local_collector().url
    if not os.environ.get("AMPLITUDE_DEPLOYMENT_KEY"):
        local_flag_server()
    app.config.update(
        SEGMENT_EXPOSURE_WRITE_KEY=write_key,
        SEGMENT_EXPOSURE_HOST=host,
        SEGMENT_EXPOSURE_SET_DEVICE_ID_COOKIE=True,  # anonymous visitors get an amp_device_id cookie
    )

    @app.before_request
    def load_user() -> None:
        user_id = session.get("user_id")
        g.user = {"id": user_id} if user_id else None

    SegmentExposure(app)  # registered after load_user, so its identity hook sees g.user

    @app.post("/login/<user_id>")
    def login(user_id: str) -> Any:
        session["user_id"] = user_id
        return jsonify(user_id=user_id)

    @app.get("/")
    def checkout() -> Any:
        user_id, device_id = identity_from_user(bound_user())
        # No user argument: the extension bound this request's identity. The page reads the flag twice
        # (banner and button); it is evaluated once per request and one exposure is sent.
        variant = experiment().variant(None, FLAG, fallback="off")
        experiment().variant(None, FLAG, fallback="off")
        return jsonify(pid=os.getpid(), user_id=user_id, device_id=device_id, variant=variant.key)

    return app


def demo() -> int:
    """Drive the app with Flask's test client and print what Segment received, as JSON."""
    app = create_app()
    alice = app.test_client()
    alice.post("/login/alice-0001")
    seen = [alice.get("/").get_json(), alice.get("/").get_json()]  # a repeat: deduplicated
    anonymous = app.test_client()
    seen.append(anonymous.get("/").get_json())  # gets a device id cookie
    provider = app.extensions["segment_exposure"].provider
    delivered = provider.flush(10)
    summary: dict[str, Any] = {"responses": seen, "stats": provider.stats()}
    if _collector is not None:
        summary["received"] = [
            {"userId": m["userId"], "anonymousId": m["anonymousId"], "properties": m["properties"]}
            for m in _collector.events()
        ]
    print(json.dumps(summary, indent=2, default=str))
    return 0 if delivered else 1


if __name__ == "__main__":
    if "--demo" in sys.argv[1:]:
        raise SystemExit(demo())
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
