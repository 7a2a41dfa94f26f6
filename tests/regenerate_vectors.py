"""Rewrite the golden vectors' expectations from Segment's own Amplitude destination.

Why: vectors written from our own reading of Segment's mapping agreed with the code and could not catch a
misreading. Where Segment delivers and we follow it, ``expect`` becomes Segment's event passed through the
deliberate deviations of ``tests/test_segment_parity.py``; where one of those deviations makes us refuse
(not an exposure, ids Amplitude refuses) or makes us deliver what Segment refuses, ``expect`` keeps our
outcome. Run ``python -m tests.regenerate_vectors`` (``--check`` only reports) from the repository root
with the oracle installed (``npm ci --prefix tests/js/segment-actions``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from segment_exposure import PermanentError, to_amplitude_event

from .segment_oracle import oracle_missing, run_oracle
from .test_segment_parity import VECTOR_DIR, Case, expected_from_segment


def _ours(vector: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"ok": to_amplitude_event(vector["input"], **(vector.get("options") or {}))}
    except PermanentError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


def expectation(vector: dict[str, Any], seg: dict[str, Any]) -> Any:
    """What ``vector["expect"]`` should be, given Segment's result ``seg`` for its input."""
    ours = _ours(vector)
    case = Case(vector["name"], vector["input"], vector.get("options") or {})
    if seg["outcome"] == "sent" and ("ok" in ours or "error" not in vector["expect"]):
        # We follow Segment (through the deviation table); if we refuse instead, the vector fails until fixed.
        return expected_from_segment(case, seg["event"])
    if seg["outcome"] == "error" and "ok" in ours:
        return ours["ok"]  # a listed deviation: Segment refuses what we deliver
    return vector["expect"]


def regenerate(*, write: bool) -> list[str]:
    """The names of the vectors whose expectation changes (written back when ``write``)."""
    changed: list[str] = []
    for path in sorted(VECTOR_DIR.glob("*.json")):
        vectors = json.loads(path.read_text(encoding="utf-8"))
        segment = run_oracle([v["input"] for v in vectors])
        for vector, seg in zip(vectors, segment, strict=True):
            expect = expectation(vector, seg)
            if expect != vector["expect"]:
                changed.append(f"{path.name}: {vector['name']}")
                vector["expect"] = expect
        if write and changed:
            path.write_text(json.dumps(vectors, indent=2, ensure_ascii=True) + "\n", encoding="utf-8")
    return changed


def main(argv: list[str]) -> int:
    missing = oracle_missing()
    if missing:
        print(f"cannot regenerate: {missing}", file=sys.stderr)
        return 2
    changed = regenerate(write="--check" not in argv)
    for name in changed:
        print(name)
    print(f"{len(changed)} expectations {'differ' if '--check' in argv else 'rewritten'}", file=sys.stderr)
    return 1 if changed and "--check" in argv else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
