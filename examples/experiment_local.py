"""Local evaluation with Amplitude's LocalEvaluationClient, exposures sent through Segment.

    python examples/experiment_local.py

With AMPLITUDE_DEPLOYMENT_KEY and SEGMENT_WRITE_KEY set it uses Amplitude and Segment. Without them it
starts a local flag server (the bundled demo flags) and a local Segment collector, and prints, as JSON,
what the collector received.
"""

from __future__ import annotations

import json
import os
import sys

from amplitude_experiment import LocalEvaluationClient, LocalEvaluationConfig, User

from segment_exposure import (
    ExposureTrackingClient,
    FlagConfigServer,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    demo_flags,
)


def main() -> int:
    deployment_key = os.environ.get("AMPLITUDE_DEPLOYMENT_KEY")
    write_key = os.environ.get("SEGMENT_WRITE_KEY")
    flags = None if deployment_key else FlagConfigServer(flags=demo_flags()).start()
    collector = None if write_key else SegmentCollector("local-write-key").start()
    config = LocalEvaluationConfig(server_url=flags.url) if flags else LocalEvaluationConfig()
    local = LocalEvaluationClient(deployment_key or (flags.deployment_key if flags else ""), config)
    local.start()
    provider = SegmentExposureTrackingProvider(
        write_key or "local-write-key", host=collector.url if collector else None
    )
    experiment = ExposureTrackingClient(local, provider)

    served = {}
    for i in range(10):
        user = User(user_id=f"example-user-{i:03d}", device_id=f"example-device-{i:03d}", country="US")
        variant = experiment.variant(user, "checkout-flow", fallback="off")
        experiment.variant(user, "checkout-flow")  # a repeat: tracked once
        served[user.user_id] = variant.key
    experiment.variant(User(user_id="example-user-000"), "no-such-flag", fallback="off")  # not tracked

    delivered = provider.flush(timeout=10)
    local.stop()
    summary = {"served": served, "experiment": experiment.stats(), "provider": provider.stats()}
    if collector is not None:
        summary["received"] = [
            {"userId": m["userId"], "properties": m["properties"]} for m in collector.events()
        ]
        collector.stop()
    if flags is not None:
        flags.stop()
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0 if delivered else 1


if __name__ == "__main__":
    raise SystemExit(main())
