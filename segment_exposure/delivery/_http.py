"""One POST to Amplitude, through urllib3 directly or through a caller's ``requests.Session``.

Why not always ``requests``: per request it re-reads the environment (proxies, ``~/.netrc``), merges
settings, prepares and wraps; that is about 0.4 ms of CPU per request, half of what the webhook spends on a
one-event batch. The client's own connection pool therefore talks urllib3 (which requests itself uses),
with the proxy and CA settings read from the environment once, when it is built. A session the caller
passes in is used as it is, with everything it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy

__all__ = ["HttpFailure", "HttpTimeout", "Poster", "Reply", "RequestsPoster", "Urllib3Poster", "redact_url"]


class HttpTimeout(Exception):
    """No connection or no answer within the timeout."""


class HttpFailure(Exception):
    """The request failed on the network (refused, reset, TLS, proxy...)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, body and the ``Retry-After`` header (None when absent)."""

    status: int
    content: bytes
    retry_after: str | None


class Poster(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: tuple[float, float]) -> Reply: ...

    def close(self) -> None: ...


class Urllib3Poster:
    """Posts over one urllib3 pool; ``proxies`` and ``verify`` as ``requests`` reads them from the
    environment (``requests.Session.merge_environment_settings``), resolved once for ``url``."""

    def __init__(self, url: str, *, maxsize: int, proxies: dict[str, str], verify: Any) -> None:
        options: dict[str, Any] = {"maxsize": maxsize, "block": False, "retries": False}
        if url.lower().startswith("https:"):
            if verify is False:
                options["cert_reqs"] = "CERT_NONE"
            else:
                options["cert_reqs"] = "CERT_REQUIRED"
                options["ca_certs"] = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
        proxy = select_proxy(url, proxies)
        self.proxy = proxy
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
        )

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: tuple[float, float]) -> Reply:
        try:
            response = self._pool.request(
                "POST",
                url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
                retries=False,
                redirect=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # (a subclass of ConnectTimeoutError)
            raise HttpFailure(str(exc)) from None
        except urllib3.exceptions.TimeoutError as exc:
            raise HttpTimeout(type(exc).__name__) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise HttpFailure(str(exc) or type(exc).__name__) from None
        return Reply(response.status, response.data, response.headers.get("Retry-After"))

    def close(self) -> None:
        self._pool.clear()


class RequestsPoster:
    """Posts with a caller's ``requests.Session``, as it is configured."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: tuple[float, float]) -> Reply:
        try:
            response = self.session.post(url, data=body, headers=headers, timeout=timeout)
            content = response.content
        except requests.Timeout as exc:
            raise HttpTimeout(type(exc).__name__) from None
        except requests.RequestException as exc:
            raise HttpFailure(str(exc)) from None
        return Reply(response.status_code, content, response.headers.get("Retry-After"))

    def close(self) -> None:
        """The session is the caller's: it stays open."""


def redact_url(url: str) -> str:
    """``url`` without user info, so credentials in an endpoint never reach a log or a repr."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))
