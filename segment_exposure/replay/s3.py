"""``s3://bucket/prefix`` archives, through boto3 (the ``s3`` extra).

Why list folder by folder (``Delimiter="/"``) rather than every key at once: a day folder outside the
window is then skipped without even listing its files, as on a local disk. boto3 finds credentials,
region and endpoint the usual way (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL_S3``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .archive import ArchiveFile, Reader, day_of
from .window import TimeWindow

__all__ = ["INSTALL_HINT", "S3Archive", "S3Error", "split_url"]

INSTALL_HINT = "pip install 'segment-exposure[s3]'"


class S3Error(Exception):
    """Listing the bucket failed (no such bucket, no access, no credentials): one line, no secrets."""


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``("bucket", "prefix")``; raises ValueError without a bucket."""
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"expected s3://BUCKET[/PREFIX], got {url!r}")
    return bucket, prefix


class S3Archive:
    """Lists and opens the objects under ``s3://`` URLs with one boto3 client (made on first use)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    def _s3(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise ImportError(f"s3:// paths need boto3: {INSTALL_HINT}") from None
            self._client = boto3.client("s3")
        return self._client

    def __call__(self, url: str, window: TimeWindow, skipped: Callable[[str], None]) -> Iterator[ArchiveFile]:
        """The objects under ``url`` in received-day order (see :class:`segment_exposure.replay.Catalog`).

        Raises:
            S3Error: the listing failed.
        """
        bucket, prefix = split_url(url)
        try:
            found = list(self._walk(bucket, prefix, None, window, skipped))
        except ImportError:
            raise
        except Exception as exc:  # botocore's: ClientError, NoCredentialsError, EndpointConnectionError
            raise S3Error(f"cannot list {url}: {_describe(exc)}") from None
        found.sort(key=lambda f: (f.day_ms or 0, f.key))
        return iter(found)

    def _walk(
        self,
        bucket: str,
        prefix: str,
        day: int | None,
        window: TimeWindow,
        skipped: Callable[[str], None],
    ) -> Iterator[ArchiveFile]:
        paginator = self._s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", ()):
                sub = common["Prefix"]
                sub_day = day_of(sub.rstrip("/").rsplit("/", 1)[-1])
                if sub_day is not None and window.bounded and not window.may_hold(sub_day):
                    skipped(f"s3://{bucket}/{sub}")
                    continue
                yield from self._walk(bucket, sub, sub_day if sub_day is not None else day, window, skipped)
            for item in page.get("Contents", ()):
                key = item["Key"]
                if key.endswith("/") or key.rsplit("/", 1)[-1].startswith("."):
                    continue
                yield ArchiveFile(f"s3://{bucket}/{key}", key, day, self._opener(bucket, key))

    def _opener(self, bucket: str, key: str) -> Callable[[], Reader]:
        def open_object() -> Reader:
            try:
                body = self._s3().get_object(Bucket=bucket, Key=key)["Body"]
            except Exception as exc:
                raise OSError(_describe(exc)) from None
            return _Body(body)

        return open_object


class _Body:
    """An object's streaming body whose failures (botocore's and urllib3's own classes) are OSErrors."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int = -1, /) -> bytes:
        try:
            data: bytes = self._body.read(size if size >= 0 else None)
        except Exception as exc:
            raise OSError(f"reading failed: {_describe(exc)}") from None
        return data

    def close(self) -> None:
        try:
            self._body.close()
        except Exception:
            pass  # the connection is dropped either way


def _describe(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code, message = error.get("Code"), error.get("Message")
        if code:
            return f"{code}: {message}" if message else str(code)
    return f"{type(exc).__name__}: {exc}"
