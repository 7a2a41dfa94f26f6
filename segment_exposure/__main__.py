"""``python -m segment_exposure`` is the ``segment-exposure`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
