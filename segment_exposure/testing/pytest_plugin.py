"""The pytest plugin: installing segment-exposure gives every suite the ``exposures`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .capture import CapturedExposures, capture_exposures

__all__ = ["exposures"]


@pytest.fixture
def exposures() -> Iterator[CapturedExposures]:
    """Exposures accepted by any provider during the test (after dedupe), as Segment track kwargs."""
    with capture_exposures() as captured:
        yield captured
