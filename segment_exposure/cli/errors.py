"""The one error a subcommand raises for a user's mistake; ``main`` prints it in one line, exit code 2."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A mistake in how the command was called: reported in one line, exit code 2."""
