"""The provider on its own: exposures into Segment.

With SEGMENT_WRITE_KEY set it sends to Segment; without it, to a local collector on 127.0.0.1, and it
prints what arrived there.
"""

from __future__ import annotations

import os

from segment_exposure import Exposure, SegmentCollector, SegmentExposureTrackingProvider


def main() -> int:
    write_key = os.environ.get("SEGMENT_WRITE_KEY")
    collector = None if write_key else SegmentCollector("local-write-key").start()
    provider = SegmentExposureTrackingProvider(
        write_key or "local-write-key", host=collector.url if collector else None
    )
    users = [{"user_id": f"user-{i:04d}", "device_id": f"device-{i:04d}"} for i in range(20)]
    for user in users:
        variant = "treatment" if int(user["user_id"][-1]) % 2 else "control"
        provider.track(Exposure("checkout-flow", variant, "exp-1"), user)
        provider.track(Exposure("checkout-flow", variant, "exp-1"), user)  # a repeat: deduplicated
    delivered = provider.flush(timeout=10)
    print("stats:", provider.stats())
    if collector is not None:
        print(f"the local collector received {len(collector.events())} $exposure events")
        collector.stop()
    return 0 if delivered else 1


if __name__ == "__main__":
    raise SystemExit(main())
