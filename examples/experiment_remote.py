"""Remote evaluation with Amplitude's RemoteEvaluationClient, exposures sent through Segment.

    python examples/experiment_remote.py

Fetches ask Amplitude to track nothing itself (X-Amp-Exp-Track and X-Amp-Exp-Exposure-Track are
"no-track"), so the $exposure sent through Segment is the only one. With AMPLITUDE_DEPLOYMENT_KEY and
SEGMENT_WRITE_KEY set it uses Amplitude and Segment; without them, a local evaluation server and a local
Segment collector, and it prints, as JSON, what they saw.
"""

from __future__ import annotations

import json
import os
import sys

from amplitude_experiment import RemoteEvaluationClient, RemoteEvaluationConfig, User

from segment_exposure import (
    ExposureTrackingClient,
    FlagConfigServer,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    bind_user,
    demo_flags,
)


def main() -> int:
    deployment_key = os.environ.get("AMPLITUDE_DEPLOYMENT_KEY")
    write_key = os.environ.get("SEGMENT_WRITE_KEY")
    server = None if deployment_key else FlagConfigServer(flags=demo_flags()).start()
    collector = None if write_key else SegmentCollector("local-write-key").start()
    config = RemoteEvaluationConfig(server_url=server.url) if server else RemoteEvaluationConfig()
    remote = RemoteEvaluationClient(deployment_key or (server.deployment_key if server else ""), config)
    provider = SegmentExposureTrackingProvider(
        write_key or "local-write-key", host=collector.url if collector else None
    )
    experiment = ExposureTrackingClient(remote, provider)

    served = {}
    for i in range(5):
        user = User(user_id=f"example-user-{i:03d}", device_id=f"example-device-{i:03d}", country="CA")
        with bind_user(user):  # as a web integration would: one fetch serves the whole request
            served[user.user_id] = {
                flag: experiment.variant(None, flag).key for flag in ("checkout-flow", "search-ranking")
            }

    delivered = provider.flush(timeout=10)
    summary = {"served": served, "experiment": experiment.stats(), "provider": provider.stats()}
    if collector is not None:
        summary["received"] = [
            {"userId": m["userId"], "properties": m["properties"]} for m in collector.events()
        ]
        collector.stop()
    if server is not None:
        fetches = server.requests("/sdk/v2/vardata")
        summary["fetches"] = len(fetches)
        summary["tracking_headers"] = sorted(
            {f"{r.header('X-Amp-Exp-Track')}/{r.header('X-Amp-Exp-Exposure-Track')}" for r in fetches}
        )
        server.stop()
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0 if delivered else 1


if __name__ == "__main__":
    raise SystemExit(main())
