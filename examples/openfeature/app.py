"""OpenFeature over Amplitude Experiment, exposures and tracking events through Segment.

    python examples/openfeature/app.py

With AMPLITUDE_DEPLOYMENT_KEY and SEGMENT_WRITE_KEY set it uses Amplitude and Segment. Without them it
starts a local flag server (the bundled demo flags) and a local Segment collector, and prints, as JSON,
what was served and what the collector received.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from amplitude_experiment import LocalEvaluationClient, LocalEvaluationConfig
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.track import TrackingEventDetails

from segment_exposure import (
    AmplitudeExperimentProvider,
    ExposureHook,
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
    segment = SegmentExposureTrackingProvider(
        write_key or "local-write-key", host=collector.url if collector else os.environ.get("SEGMENT_HOST")
    )

    hook = ExposureHook(segment)
    api.add_hooks([hook])  # every evaluation, by any provider: one $exposure (deduplicated)
    provider = AmplitudeExperimentProvider(local, tracking_provider=segment)
    # initialize() starts the local client; openfeature-sdk 0.9's set_provider waits for it by itself.
    getattr(api, "set_provider_and_wait", api.set_provider)(provider)
    client = api.get_client()

    served: dict[str, Any] = {}
    for i in range(6):
        context = EvaluationContext(
            targeting_key=f"example-user-{i:03d}", attributes={"device_id": f"example-device-{i:03d}"}
        )
        details = client.get_string_details("checkout-flow", "off", context)
        client.get_string_value("checkout-flow", "off", context)  # a repeat: one exposure
        banner = client.get_object_value("pricing-banner", {}, context)  # trackExposure false: none
        served[context.targeting_key] = {"checkout-flow": [details.variant, details.reason], "banner": banner}
        client.track(
            "Order Completed", context, TrackingEventDetails(value=10.0 + i, attributes={"plan": "pro"})
        )
    missing = client.get_string_details("no-such-flag", "off", EvaluationContext("example-user-000"))

    api.shutdown()  # stops the local client
    delivered = segment.flush(timeout=10)
    summary: dict[str, Any] = {
        "served": served,
        "missing_flag_error": missing.error_code,
        "hook": hook.stats(),
        "provider": provider.stats(),
        "segment": segment.stats(),
    }
    if collector is not None:
        summary["received"] = [
            {"event": m["event"], "userId": m["userId"], "properties": m["properties"]}
            for m in collector.unique_messages().values()
        ]
        collector.stop()
    if flags is not None:
        flags.stop()
    segment.shutdown()
    json.dump(summary, sys.stdout, indent=2, default=str)
    print()
    return 0 if delivered else 1


if __name__ == "__main__":
    raise SystemExit(main())
