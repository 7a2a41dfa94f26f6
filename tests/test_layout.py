"""Issue 16, layout: no Python module in the package over ~450 lines; a longer one is split along its seams.

(The Segment Function, ``functions/amplitude_exposure.js``, is one file by Segment's rules and not Python.)
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "segment_exposure"
MAX_LINES = 450


def test_no_module_is_over_the_line_limit() -> None:
    lengths = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")
    }
    assert len(lengths) > 50  # the package, not an empty directory
    assert {module: n for module, n in lengths.items() if n > MAX_LINES} == {}
