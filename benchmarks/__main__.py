"""Run the benchmarks and print every figure as a ratio against its peer.

``python -m benchmarks`` (full), ``--quick`` (a smoke run for CI: checks everything runs, not the
timings), ``--json`` (machine output), ``--only B1,B2`` (a subset by group).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from typing import Any

GROUPS = {
    "provider": "benchmarks.provider",
    "experiment": "benchmarks.experiment",
    "delivery": "benchmarks.delivery",
    "serve": "benchmarks.serve",
    "serverless": "benchmarks.serverless",
    "openfeature": "benchmarks.openfeature",
    "replay": "benchmarks.replay",
    "rudderstack": "benchmarks.rudderstack",
}


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition: a smoke test")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--only", default="", help=f"comma-separated groups: {', '.join(GROUPS)}")
    args = parser.parse_args(argv)
    groups = [g for g in args.only.split(",") if g] or list(GROUPS)
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    results = []
    for group in groups:
        module = importlib.import_module(GROUPS[group])
        results.extend(module.run(args.quick))
    if args.json:
        print(
            json.dumps(
                {"machine": machine(), "quick": args.quick, "results": [r.as_dict() for r in results]},
                indent=2,
            )
        )
        return 0
    print(f"machine: {machine()}  quick={args.quick}")
    print(f"{'id':<4} {'what':<62} {'ours':>12} {'peer':>12} {'ratio':>8}  goal       met  peer")
    for r in results:
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        print(
            f"{r.id:<4} {r.what:<62} {r.ours:>12.1f} {r.peer:>12.1f} {r.ratio:>8.3f}  {r.goal:<10} {met:<4} "
            f"{r.peer_name}"
        )
        extra = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.detail.items()}
        if extra:
            print(f"     {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
