"""The AWS Lambda entry point: set the function's handler to ``handler.lambda_handler``.

Everything is configured from the environment (see README.md); the destination is built once per container.
You can also point the handler straight at ``segment_exposure.server.lambda_handler``; this module exists so
that a deployment package has an obvious file to name, and a place for your own wrapping if you need it.
"""

from __future__ import annotations

from segment_exposure import lambda_handler

__all__ = ["lambda_handler"]
