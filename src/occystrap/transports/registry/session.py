"""RegistrySession: one registry host over a pooled, thread-safe httpx client.

Every request goes through ``RegistrySession._exchange``: ``Authorization`` from the
:class:`~.auth.Authenticator` (learnt from 401 challenges), redirects followed by hand so the
header never reaches another origin (blob GETs redirect to storage), and retries from
:mod:`.retry`. Error bodies become one-line :class:`RegistryError` messages with secrets
redacted (:meth:`RegistrySession.fail`). The Distribution API itself is in :mod:`.client`.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Self

import httpx

from ... import __version__
from ...errors import (
    AuthenticationError,
    InvalidReference,
    LimitExceeded,
    MalformedInput,
    NotFound,
    RegistryError,
)
from ...model.digest import Digest
from . import retry as retrying
from .auth import Authenticator, parse_challenges
from .credentials import Credentials, RedactingFilter, redact
from .retry import RetryPolicy
from .tls import TLSConfig

log = logging.getLogger(__name__)
log.addFilter(RedactingFilter())

MANIFEST_MAX = 4 << 20
ERROR_BODY_MAX = 64 << 10
CHUNK = 1 << 20
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_NO_RETRY = RetryPolicy(attempts=1)


@dataclass
class ClientStats:
    """Counters of one client; thread-safe increments."""

    requests: int = 0
    retries: int = 0
    resumes: int = 0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))


class RegistrySession:
    """One registry host. Safe to share between threads; close it (or use ``with``) when done."""

    """One registry host. Safe to share between threads; close it (or use ``with``) when done."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        tls: TLSConfig | None = None,
        credentials: Credentials | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 60.0,
        user_agent: str | None = None,
        max_connections: int = 16,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        self.tls = tls or TLSConfig()
        self.scheme = "http" if insecure or self.tls.is_insecure(host) else "https"
        self.base_url = f"{self.scheme}://{host}"
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self.sleep = sleep
        self._origin = _origin(httpx.URL(self.base_url))
        self._warned: set[str] = set()
        if not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(timeout, connect=min(15.0, timeout))
        limits = httpx.Limits(
            max_connections=max(16, max_connections), max_keepalive_connections=16
        )
        headers = {"User-Agent": user_agent or f"occystrap/{__version__}"}
        if self.scheme == "http" and not _env_proxies():
            # Plain HTTP needs TLS only after a redirect to https (blob storage): build the
            # verifying context (tens of ms of CPU: the system CAs) on first use only.
            self._http = httpx.Client(
                transport=httpx.HTTPTransport(verify=False, limits=limits),
                mounts={"https://": _LazyTransport(lambda: self.tls.context(host), limits)},
                timeout=timeout,
                follow_redirects=False,
                headers=headers,
            )
        else:
            self._http = httpx.Client(
                verify=self.tls.context(host),
                timeout=timeout,
                limits=limits,
                follow_redirects=False,
                headers=headers,
            )
        self.auth = Authenticator(host, self._http, credentials, retry=self.retry, sleep=sleep)

    # ---- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing --------------------------------------------------------------------

    def url(self, repository: str, kind: str, ref: str) -> str:
        return f"{self.base_url}/v2/{repository}/{kind}/{ref}"

    def _exchange(
        self,
        method: str,
        url: str | httpx.URL,
        scopes: tuple[str, ...],
        headers: Mapping[str, str] | None,
        content: Callable[[], Any] | bytes | None,
    ) -> httpx.Response:
        """One logical request: authenticate (answering 401 challenges) and follow redirects."""
        refreshed = False
        response: httpx.Response | None = None
        for round_ in range(4):
            value = self.auth.authorization(scopes)
            response = self._follow(method, httpx.URL(str(url)), headers or {}, content, value)
            if response.status_code != 401 or round_ == 3:
                return response
            wanted = self.auth.challenged(response, scopes)
            if wanted is None or (value is not None and value.startswith("Basic ")):
                return response
            if value is not None and set(wanted) == set(scopes):
                if refreshed:
                    return response
                self.auth.invalidate(scopes)
                refreshed = True
            response.close()
            scopes = wanted
        assert response is not None
        return response

    def _follow(
        self,
        method: str,
        url: httpx.URL,
        headers: Mapping[str, str],
        content: Callable[[], Any] | bytes | None,
        authorization: str | None,
    ) -> httpx.Response:
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if authorization is not None and _origin(url) == self._origin:
                sent["Authorization"] = authorization
            body = content() if callable(content) else content
            request = self._http.build_request(method, url, headers=sent, content=body)
            response = self._http.send(request, stream=True)
            self.stats.add(requests=1)
            self._note_warnings(response)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            response.close()
            url = url.join(location)
            log.debug("%s redirected to %s", method, url.copy_with(query=None))
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method not in ("GET", "HEAD")
            ):
                method, content = "GET", None
        raise RegistryError(
            f"registry {self.host}: more than {MAX_REDIRECTS} redirects for {method} {url.path}"
        )

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        scopes: tuple[str, ...],
        what: str,
        headers: Mapping[str, str] | None = None,
        content: Callable[[], Any] | bytes | None = None,
        limit: int = MANIFEST_MAX,
        retries: bool = True,
    ) -> httpx.Response:
        """A request whose body is read (capped at ``limit``) inside the retry loop."""

        def attempt() -> httpx.Response:
            response = self._exchange(method, url, scopes, headers, content)
            try:
                body = _read_capped(response, limit, what)
            finally:
                response.close()
            headers_read = httpx.Headers(response.headers)
            headers_read.pop("content-encoding", None)  # ``body`` is already decoded
            return httpx.Response(
                response.status_code, headers=headers_read, content=body, request=response.request
            )

        policy = self.retry if retries else _NO_RETRY
        return retrying.call(policy, attempt, what, sleep=self.sleep, on_retry=self._count_retry)

    def request_stream(
        self,
        method: str,
        url: str,
        *,
        scopes: tuple[str, ...],
        what: str,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        """A request whose response body is left unread for the caller to stream."""
        return retrying.call(
            self.retry,
            lambda: self._exchange(method, url, scopes, headers, None),
            what,
            sleep=self.sleep,
            on_retry=self._count_retry,
        )

    def _count_retry(self) -> None:
        self.stats.add(retries=1)

    def _note_warnings(self, response: httpx.Response) -> None:
        for value in response.headers.get_list("warning"):
            match = re.match(r'\s*299\s+\S+\s+"((?:[^"\\]|\\.)*)"', value)
            if match and match.group(1) not in self._warned:
                self._warned.add(match.group(1))
                log.warning("registry %s says: %s", self.host, match.group(1))

    def fail(
        self,
        response: httpx.Response,
        what: str,
        repository: str | None = None,
        not_found: type[NotFound] | None = None,
    ) -> NoReturn:
        """Raise the typed error for an unexpected response (body read up to 64 KiB)."""
        if not response.is_stream_consumed:
            body = _read_capped(response, ERROR_BODY_MAX, what, truncate=True)
            response.close()
        else:
            body = response.content
        codes, detail = _error_details(body)
        status = response.status_code
        secrets = self.auth.secrets()
        where = f"{self.host}/{repository}" if repository else self.host
        if status == 401:
            if self.credentials is None:
                raise AuthenticationError(
                    f"authentication required for {where} (no credentials found)", 401, codes
                )
            challenges = parse_challenges(response.headers.get_list("www-authenticate"))
            if any(c.get("error") == "insufficient_scope" for c in challenges):
                message = f"access denied to {where} for the given credentials (insufficient_scope)"
            else:
                message = f"credentials refused for {self.host} (source: {self.credentials.source}){detail}"
            raise AuthenticationError(redact(message, secrets), 401, codes)
        if status == 403:
            raise AuthenticationError(
                redact(f"access denied to {where}{detail}", secrets), 403, codes
            )
        if status == 404 and not_found is not None:
            raise not_found(redact(f"{what}: not found{detail}", secrets))
        retryable = self.retry.retries_status(status)
        raise RegistryError(
            redact(f"{what}: HTTP {status}{detail}", secrets), status, codes, retryable
        )


# ---- helpers ---------------------------------------------------------------------------


class _LazyTransport(httpx.BaseTransport):
    """An https transport whose SSL context is made when the first request needs it."""

    def __init__(self, context: Callable[[], ssl.SSLContext], limits: httpx.Limits) -> None:
        self._context, self._limits = context, limits
        self._transport: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            if self._transport is None:
                self._transport = httpx.HTTPTransport(verify=self._context(), limits=self._limits)
            transport = self._transport
        return transport.handle_request(request)

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()


def _env_proxies() -> bool:
    """Whether the environment names a proxy (httpx then sets up its own transports)."""
    return any(key in ("http", "https", "all") for key in urllib.request.getproxies())


def _read_capped(response: httpx.Response, limit: int, what: str, truncate: bool = False) -> bytes:
    out = bytearray()
    for chunk in response.iter_bytes(CHUNK):
        out += chunk
        if len(out) > limit:
            if truncate:
                return bytes(out[:limit])
            raise LimitExceeded(f"{what}: the response is larger than {limit} bytes")
    return bytes(out)


def _content_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip()


def _parse_digest(text: str, what: str) -> Digest:
    try:
        return Digest.parse(text.strip())
    except InvalidReference:
        raise MalformedInput(f"{what}: malformed Docker-Content-Digest {text[:80]!r}") from None


def _error_details(body: bytes) -> tuple[tuple[str, ...], str]:
    try:
        doc = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return (), ""
    codes: list[str] = []
    parts: list[str] = []
    for item in errors[:5]:
        if not isinstance(item, dict):
            continue
        code, message = str(item.get("code") or ""), str(item.get("message") or "")
        if code:
            codes.append(code)
        parts.append(f"{code}: {message}" if message else code)
    detail = " ".join("; ".join(p for p in parts if p).split())[:300]
    return tuple(codes), (f" ({detail})" if detail else "")
