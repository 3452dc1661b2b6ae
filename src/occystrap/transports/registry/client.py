"""RegistryClient: the Distribution API over one pooled, thread-safe httpx client.

Every request goes through ``RegistryClient._exchange``: ``Authorization`` from the
:class:`~.auth.Authenticator` (learnt from 401 challenges), redirects followed by hand so the
header never reaches another origin (blob GETs redirect to storage), and retries from
:mod:`.retry`. Manifests are read whole but capped (4 MiB), and their digests checked against
``Docker-Content-Digest`` and the requested digest. Blob downloads live in :mod:`.blobs`
(verifying, ``Range``-resuming reader; resumable files), uploads in :mod:`.upload`. Error
bodies become one-line :class:`RegistryError` messages with secrets redacted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn

import httpx

from ... import __version__
from ...errors import (
    AuthenticationError,
    DigestMismatch,
    ImageNotFound,
    InvalidReference,
    LimitExceeded,
    MalformedInput,
    NotFound,
    RegistryError,
)
from ...model.digest import Digest
from ...model.media_types import ACCEPT_MANIFESTS, SCHEMA1_TYPES, MediaType
from . import retry as retrying
from .auth import Authenticator, parse_challenges, repository_scope
from .blobs import BlobReader, download_to
from .credentials import Credentials, RedactingFilter, redact
from .retry import RetryPolicy
from .tls import TLSConfig
from .upload import BlobSource, Uploader, UploadResult

log = logging.getLogger(__name__)
log.addFilter(RedactingFilter())

MANIFEST_MAX = 4 << 20
TAGS_PAGE_MAX = 64 << 20
ERROR_BODY_MAX = 64 << 10
CHUNK = 1 << 20
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_NO_RETRY = RetryPolicy(attempts=1)

__all__ = [
    "BlobReader",
    "BlobSource",
    "ClientStats",
    "Manifest",
    "ManifestHead",
    "RegistryClient",
    "UploadResult",
]


class Manifest(NamedTuple):
    raw: bytes
    media_type: str
    digest: Digest


class ManifestHead(NamedTuple):
    digest: Digest | None
    media_type: str
    size: int | None


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


def _as_digest(reference: str) -> Digest | None:
    return Digest.parse(reference) if "@" not in reference and ":" in reference else None


class RegistryClient:
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
        self._http = httpx.Client(
            verify=self.tls.context(host),
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max(16, max_connections), max_keepalive_connections=16
            ),
            follow_redirects=False,
            headers={"User-Agent": user_agent or f"occystrap/{__version__}"},
        )
        self.auth = Authenticator(host, self._http, credentials, retry=self.retry, sleep=sleep)

    # ---- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
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

    # ---- API: base and manifests -----------------------------------------------------

    def ping(self) -> None:
        """Check that HOST speaks the registry API; learn its auth challenge if any."""
        what = f"registry {self.host}"

        def attempt() -> httpx.Response:
            response = self._follow("GET", httpx.URL(f"{self.base_url}/v2/"), {}, None, None)
            _read_capped(response, ERROR_BODY_MAX, what, truncate=True)
            response.close()
            return response

        response = retrying.call(
            self.retry, attempt, what, sleep=self.sleep, on_retry=self._count_retry
        )
        if response.status_code == 401:
            self.auth.challenged(response, ())
        elif response.status_code != 200:
            self.fail(response, f"{what} (GET /v2/)")

    def get_manifest(
        self, repository: str, reference: str, accept: str = ACCEPT_MANIFESTS
    ) -> Manifest:
        """The manifest bytes exactly as stored, their media type and verified digest."""
        wanted = _as_digest(reference)
        what = f"manifest {self.host}/{repository}{'@' if wanted else ':'}{reference}"
        response = self.request(
            "GET",
            self.url(repository, "manifests", reference),
            scopes=(repository_scope(repository),),
            what=what,
            headers={"Accept": accept},
        )
        if response.status_code != 200:
            self.fail(response, what, repository, ImageNotFound)
        raw = response.content
        media_type = _manifest_media_type(raw, _content_type(response), what)
        digest = (
            Digest.of_bytes(raw, wanted.algorithm)
            if wanted and wanted.supported
            else Digest.of_bytes(raw)
        )
        if wanted is not None and wanted.supported and digest != wanted:
            raise DigestMismatch(what, str(wanted), str(digest))
        header = response.headers.get("docker-content-digest")
        if header and media_type not in SCHEMA1_TYPES:
            claimed = _parse_digest(header, what)
            if claimed.supported and Digest.of_bytes(raw, claimed.algorithm) != claimed:
                actual = Digest.of_bytes(raw, claimed.algorithm)
                raise DigestMismatch(f"{what} (Docker-Content-Digest)", str(claimed), str(actual))
            if wanted is None:
                digest = claimed
        elif header and wanted is None:
            digest = _parse_digest(header, what)
        return Manifest(raw, media_type, wanted or digest)

    def head_manifest(
        self, repository: str, reference: str, accept: str = ACCEPT_MANIFESTS
    ) -> ManifestHead | None:
        """Digest, media type and size of a manifest without a (rate-limited) GET; None if absent."""
        what = f"manifest {self.host}/{repository}:{reference}"
        response = self.request(
            "HEAD",
            self.url(repository, "manifests", reference),
            scopes=(repository_scope(repository),),
            what=what,
            headers={"Accept": accept},
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            self.fail(response, what, repository)
        header = response.headers.get("docker-content-digest")
        length = response.headers.get("content-length")
        return ManifestHead(
            _parse_digest(header, what) if header else None,
            _content_type(response),
            int(length) if length and length.isdigit() else None,
        )

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> Digest:
        """Store ``raw`` byte for byte under a tag or its digest; return its sha256 digest."""
        computed = Digest.of_bytes(raw)
        wanted = _as_digest(reference)
        what = f"manifest {self.host}/{repository}{'@' if wanted else ':'}{reference}"
        if wanted is not None and (
            not wanted.supported or Digest.of_bytes(raw, wanted.algorithm) != wanted
        ):
            raise InvalidReference(
                f"{what}: the bytes do not have the digest they are pushed under"
            )
        if len(raw) > MANIFEST_MAX:
            raise LimitExceeded(
                f"{what} is {len(raw)} bytes; registries accept at most {MANIFEST_MAX}"
            )
        response = self.request(
            "PUT",
            self.url(repository, "manifests", reference),
            scopes=(repository_scope(repository, ("pull", "push")),),
            what=what,
            headers={"Content-Type": media_type},
            content=raw,
        )
        if response.status_code not in (200, 201, 202, 204):
            self.fail(response, what, repository)
        header = response.headers.get("docker-content-digest")
        if header:
            claimed = _parse_digest(header, what)
            if claimed.algorithm == computed.algorithm and claimed != computed:
                raise DigestMismatch(f"{what} as stored", str(computed), str(claimed))
        return computed

    def list_tags(self, repository: str, page_size: int | None = None) -> list[str]:
        """Every tag of ``repository``, following ``Link: <…>; rel="next"`` pages."""
        what = f"tags of {self.host}/{repository}"
        first = httpx.URL(f"{self.base_url}/v2/{repository}/tags/list")
        url: httpx.URL | None = (
            first.copy_merge_params({"n": str(page_size)}) if page_size else first
        )
        tags: list[str] = []
        seen: set[str] = set()
        while url is not None and str(url) not in seen and len(seen) < 100_000:
            seen.add(str(url))
            response = self.request(
                "GET", url, scopes=(repository_scope(repository),), what=what, limit=TAGS_PAGE_MAX
            )
            if response.status_code != 200:
                self.fail(response, what, repository, ImageNotFound)
            try:
                page = json.loads(response.content)
                found = page.get("tags") or []
            except (ValueError, AttributeError):
                raise MalformedInput(f"{what}: the registry answered with malformed JSON") from None
            tags.extend(t for t in found if isinstance(t, str))
            link = _next_link(response.headers.get_list("link"))
            url = url.join(link) if link else None
        return tags

    # ---- API: blobs -------------------------------------------------------------------

    def head_blob(self, repository: str, digest: Digest) -> int | None:
        """The blob's size when present (-1 if the registry does not say), None when absent."""
        what = f"blob {self.host}/{repository}@{digest}"
        response = self.request(
            "HEAD",
            self.url(repository, "blobs", str(digest)),
            scopes=(repository_scope(repository),),
            what=what,
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            self.fail(response, what, repository)
        length = response.headers.get("content-length", "")
        return int(length) if length.isdigit() else -1

    def open_blob(self, repository: str, digest: Digest, size: int | None = None) -> BlobReader:
        """A verifying, resuming reader of one blob; raises BlobNotFound when absent."""
        return BlobReader(self, repository, digest, size)

    def download_blob_to(
        self,
        repository: str,
        digest: Digest,
        size: int | None,
        dest_path: str | os.PathLike[str],
        partial_dir: str | os.PathLike[str] | None = None,
    ) -> int:
        """Download a verified blob to ``dest_path``, resuming an earlier run (see :func:`.blobs.download_to`)."""
        return download_to(self, repository, digest, size, dest_path, partial_dir)

    def upload_blob(
        self,
        repository: str,
        source: BlobSource,
        digest: Digest | None = None,
        size: int | None = None,
        *,
        chunk_size: int = 16 << 20,
        monolithic_max: int = 32 << 20,
        mount_from: str | None = None,
    ) -> UploadResult:
        """Upload a blob unless present; see :class:`.upload.Uploader` for the strategy."""
        uploader = Uploader(self, repository, chunk_size=chunk_size, monolithic_max=monolithic_max)
        return uploader.upload(source, digest, size, mount_from=mount_from)


# ---- helpers ---------------------------------------------------------------------------


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


_GENERIC_TYPES = {"", "application/json", "text/plain", "application/octet-stream"}


def _manifest_media_type(raw: bytes, content_type: str, what: str) -> str:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise MalformedInput(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise MalformedInput(f"{what} is not a JSON object")
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        if content_type not in _GENERIC_TYPES and content_type != declared:
            raise MalformedInput(
                f"{what}: Content-Type {content_type} does not match its mediaType {declared}"
            )
        return declared
    if content_type not in _GENERIC_TYPES:
        return content_type
    if doc.get("schemaVersion") == 1:
        return MediaType.DOCKER_SCHEMA1_SIGNED if "signatures" in doc else MediaType.DOCKER_SCHEMA1
    if "manifests" in doc:
        return MediaType.OCI_INDEX
    if "layers" in doc or "config" in doc:
        return MediaType.OCI_MANIFEST
    raise MalformedInput(f"{what}: cannot tell its media type")


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


def _next_link(values: list[str]) -> str | None:
    for value in values:
        for part in value.split(","):
            match = re.match(r"\s*<([^>]*)>\s*;(.*)", part)
            if match and re.search(r'rel\s*=\s*"?next"?', match.group(2)):
                return match.group(1)
    return None
