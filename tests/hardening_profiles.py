"""Hypothesis settings for the hardening tests (issue 9), without touching anyone else's tests.

Two profiles are registered: ``hardening`` (the default: a fixed seed, a few thousand examples in all, well
under a minute) and ``hardening-long`` (ten times the examples, still derandomized), selected with
``HYPOTHESIS_PROFILE=long`` (or ``hardening-long``). They are used as ``parent=`` of each test's own
``@settings`` rather than loaded globally, so other modules keep Hypothesis' defaults.

    HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["LONG", "PROFILE", "examples", "fuzz_settings"]

_COMMON = {
    "derandomize": True,  # the fixed seed: every run explores the same examples
    "database": None,  # nothing is written to .hypothesis/
    "deadline": None,  # a shared 2-core machine: wall-clock deadlines would only add flakiness
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
}

settings.register_profile("hardening", **_COMMON)  # type: ignore[arg-type]
settings.register_profile("hardening-long", **_COMMON)  # type: ignore[arg-type]

LONG = os.environ.get("HYPOTHESIS_PROFILE", "").strip().lower() in ("long", "hardening-long")
PROFILE = settings.get_profile("hardening-long" if LONG else "hardening")

#: Examples per test are multiplied by this in the long profile.
LONG_FACTOR = 10


def examples(n: int) -> int:
    """``n`` examples in CI, ``n * LONG_FACTOR`` in the long profile."""
    return n * LONG_FACTOR if LONG else n


def fuzz_settings(n: int) -> settings:
    """The settings of one property test: the active profile with ``examples(n)`` examples."""
    return settings(parent=PROFILE, max_examples=examples(n))
