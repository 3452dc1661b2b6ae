"""Registry authentication: ``WWW-Authenticate`` parsing, Basic, and the Bearer token flow.

:func:`parse_challenges` reads RFC 7235 challenges (several per header and several headers,
parameters in any order, quoted strings with escapes, token68). :class:`Authenticator` turns
a learnt challenge into an ``Authorization`` value for a set of scopes: Basic credentials
directly, or a Bearer token from the realm (``GET realm?service=&scope=`` with Basic
credentials, or an OAuth2 ``POST`` with ``grant_type=refresh_token`` for identity tokens).
Tokens are cached per (realm, service, scopes) until shortly before ``expires_in`` (default
60 s, counted from ``issued_at`` when plausible) and fetched once per key even when many
threads ask at the same time. Credentials go to a realm only over HTTPS, to loopback, or to
the registry's own host: anything else gets an anonymous token request and a warning.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from ...errors import AuthenticationError, RegistryError
from .credentials import Credentials, RedactingFilter
from .retry import RetryPolicy, call

log = logging.getLogger(__name__)
log.addFilter(RedactingFilter())

DEFAULT_EXPIRES_IN = 60
_TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = _TCHAR | set("/=")


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge; ``scheme`` and parameter names are lower-case."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None

    def get(self, name: str) -> str | None:
        return self.params.get(name)

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple((self.params.get("scope") or "").split())


def parse_challenges(headers: str | Iterable[str]) -> list[Challenge]:
    """All challenges in one header value or in a list of header values, in order."""
    values = [headers] if isinstance(headers, str) else list(headers)
    out: list[Challenge] = []
    for value in values:
        out.extend(_parse_one(value))
    return out


def _parse_one(text: str) -> list[Challenge]:
    out: list[tuple[str, dict[str, str], str | None]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        start = i
        while i < n and text[i] in _TCHAR:
            i += 1
        word = text[start:i]
        if not word:
            i += 1  # junk character: skip it
            continue
        j = _skip_ws(text, i)
        if out and j < n and text[j] == "=" and _starts_value(text, j + 1):
            value, i = _read_value(text, _skip_ws(text, j + 1))
            out[-1][1].setdefault(word.lower(), value)
            continue
        out.append((word.lower(), {}, None))
        i = j
        k = i
        while k < n and text[k] in _TOKEN68:
            k += 1
        token = text[i:k]
        if token and "=" not in token.rstrip("=") and _at_item_end(text, k):
            out[-1] = (word.lower(), {}, token)
            i = k
    return [Challenge(s, p, t) for s, p, t in out]


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _starts_value(text: str, i: int) -> bool:
    i = _skip_ws(text, i)
    return i < len(text) and text[i] not in ",="


def _at_item_end(text: str, i: int) -> bool:
    i = _skip_ws(text, i)
    return i >= len(text) or text[i] == ","


def _read_value(text: str, i: int) -> tuple[str, int]:
    if i < len(text) and text[i] == '"':
        chars: list[str] = []
        i += 1
        while i < len(text) and text[i] != '"':
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            chars.append(text[i])
            i += 1
        return "".join(chars), i + 1
    start = i
    while i < len(text) and text[i] not in ", \t":
        i += 1
    return text[start:i], i


def repository_scope(repository: str, actions: Iterable[str] = ("pull",)) -> str:
    return f"repository:{repository}:{','.join(actions)}"


def merge_scopes(*groups: Iterable[str]) -> tuple[str, ...]:
    """Union of scopes, merging the actions of the same resource; sorted and stable."""
    merged: dict[str, list[str]] = {}
    for group in groups:
        for scope in group:
            resource, sep, actions = scope.rpartition(":")
            if not sep or not resource:
                merged.setdefault(scope, [])
                continue
            have = merged.setdefault(resource, [])
            have.extend(a for a in actions.split(",") if a and a not in have)
    return tuple(sorted(f"{r}:{','.join(sorted(a))}" if a else r for r, a in merged.items()))


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    return httpx.URL(f"http://{host}/").host


@dataclass
class _Token:
    value: str
    expires_at: float


class Authenticator:
    """Authorization values for one registry host; thread-safe."""

    def __init__(
        self,
        host: str,
        http: httpx.Client,
        credentials: Credentials | None = None,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        self.credentials = credentials
        self._http = http
        self._retry = retry or RetryPolicy()
        self._clock, self._wall, self._sleep = clock, wall_clock, sleep
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str, tuple[str, ...]], threading.Lock] = {}
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}
        self._challenge: Challenge | None = None
        self._warned: set[str] = set()
        self.tokens_fetched = 0

    @property
    def challenge(self) -> Challenge | None:
        return self._challenge

    def secrets(self) -> tuple[str, ...]:
        with self._lock:
            tokens = tuple(t.value for t in self._tokens.values())
        return tokens + (self.credentials.secrets() if self.credentials else ())

    def authorization(self, scopes: Iterable[str]) -> str | None:
        """The ``Authorization`` value to send for ``scopes``, or None (anonymous)."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self.credentials
            if creds is None or not creds.has_password:
                return None
            raw = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if challenge.scheme == "bearer":
            return "Bearer " + self.token(challenge, merge_scopes(scopes))
        return None

    def challenged(self, response: httpx.Response, scopes: Iterable[str]) -> tuple[str, ...] | None:
        """Learn from a 401; return the scopes to retry with, or None when retrying is futile."""
        found = parse_challenges(response.headers.get_list("www-authenticate"))
        by_scheme = {c.scheme: c for c in reversed(found)}
        challenge = by_scheme.get("bearer") or by_scheme.get("basic")
        if challenge is None:
            return None
        with self._lock:
            self._challenge = challenge
        if challenge.scheme == "basic":
            return tuple(scopes) if self.credentials and self.credentials.has_password else None
        return merge_scopes(scopes, challenge.scopes)

    def invalidate(self, scopes: Iterable[str]) -> None:
        challenge = self._challenge
        if challenge is not None:
            with self._lock:
                self._tokens.pop(self._key(challenge, merge_scopes(scopes)), None)

    def _key(
        self, challenge: Challenge, scopes: tuple[str, ...]
    ) -> tuple[str, str, tuple[str, ...]]:
        return (challenge.get("realm") or "", challenge.get("service") or "", scopes)

    def token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str:
        key = self._key(challenge, scopes)
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                cached = self._tokens.get(key)
            if cached is not None and cached.expires_at > self._clock():
                return cached.value
            fresh = self._fetch(challenge, scopes)
            with self._lock:
                self._tokens[key] = fresh
            return fresh.value

    def _fetch(self, challenge: Challenge, scopes: tuple[str, ...]) -> _Token:
        realm = challenge.get("realm")
        if not realm:
            raise AuthenticationError(
                f"registry {self.host} sent a Bearer challenge without a realm"
            )
        try:
            url = httpx.URL(realm)
        except (httpx.InvalidURL, TypeError):
            raise AuthenticationError(f"registry {self.host} sent an invalid token realm") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise AuthenticationError(
                f"registry {self.host} sent a token realm that is not http(s)"
            )
        creds = self.credentials if self._may_send_credentials(url) else None
        service = challenge.get("service")
        what = f"token request to {url.host}"
        if creds is not None and creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": "occystrap",
            }
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            response = call(
                self._retry, lambda: self._http.post(url, data=form), what, sleep=self._sleep
            )
        else:
            params = [("service", service)] if service else []
            params += [("scope", s) for s in scopes]
            target = url.copy_merge_params(tuple(params))
            basic = (
                (creds.username or "", creds.password or "")
                if creds and creds.has_password
                else None
            )
            response = call(
                self._retry,
                lambda: self._http.get(target, auth=basic),
                what,
                sleep=self._sleep,
            )
        with self._lock:
            self.tokens_fetched += 1
        return self._read_token(response, url, scopes, creds)

    def _read_token(
        self,
        response: httpx.Response,
        url: httpx.URL,
        scopes: tuple[str, ...],
        creds: Credentials | None,
    ) -> _Token:
        if response.status_code in (401, 403):
            if creds is None:
                names = (
                    ", ".join(s.split(":")[1] for s in scopes if s.count(":") >= 2)
                    or "the registry"
                )
                raise AuthenticationError(
                    f"authentication required for {self.host}/{names} (no credentials found)",
                    response.status_code,
                )
            raise AuthenticationError(
                f"credentials refused for {self.host} by its token service", 401
            )
        if response.status_code != 200:
            raise RegistryError(
                f"token service {url.host} answered HTTP {response.status_code}",
                response.status_code,
                retryable=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            doc: Any = response.json()
        except ValueError:
            doc = None
        value = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value:
            raise AuthenticationError(f"token service {url.host} returned no token")
        return _Token(value, self._clock() + self._lifetime(doc))

    def _lifetime(self, doc: Mapping[str, Any]) -> float:
        expires_in = doc.get("expires_in")
        if (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
            or expires_in <= 0
        ):
            expires_in = DEFAULT_EXPIRES_IN
        lifetime = float(expires_in)
        issued = doc.get("issued_at")
        if isinstance(issued, str):
            try:
                age = self._wall() - datetime.fromisoformat(issued).timestamp()
            except ValueError:
                age = -1.0
            if 0 <= age < lifetime:
                lifetime -= age
        return lifetime - min(30.0, lifetime * 0.1)

    def _may_send_credentials(self, url: httpx.URL) -> bool:
        if self.credentials is None:
            return False
        if url.scheme == "https" or _is_loopback(url.host) or url.host == _hostname(self.host):
            return True
        if url.host not in self._warned:
            self._warned.add(url.host)
            log.warning(
                "not sending credentials for %s to token realm host %s over plain HTTP; asking anonymously",
                self.host,
                url.host,
            )
        return False
