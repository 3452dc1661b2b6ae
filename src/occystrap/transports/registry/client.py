"""RegistryClient: the Distribution API (manifests, tags, blobs) of one registry host.

The HTTP plumbing (auth, redirects, retries, error mapping) is :class:`.session.RegistrySession`.
Manifests are read whole but capped (4 MiB), and their digests checked against
``Docker-Content-Digest`` and the requested digest. Blob downloads live in :mod:`.blobs`
(verifying, ``Range``-resuming reader; resumable files), uploads in :mod:`.upload`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import NamedTuple

import httpx

from ...errors import (
    DigestMismatch,
    ImageNotFound,
    InvalidReference,
    LimitExceeded,
    MalformedInput,
)
from ...model.digest import Digest
from ...model.media_types import ACCEPT_MANIFESTS, SCHEMA1_TYPES, MediaType
from . import retry as retrying
from .auth import repository_scope
from .blobs import BlobReader
from .session import (
    ERROR_BODY_MAX,
    MANIFEST_MAX,
    ClientStats,
    RegistrySession,
    _content_type,
    _parse_digest,
    _read_capped,
)
from .upload import MONOLITHIC_MAX, BlobSource, Readable, Uploader, UploadResult

TAGS_PAGE_MAX = 64 << 20

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


def _as_digest(reference: str) -> Digest | None:
    return Digest.parse(reference) if "@" not in reference and ":" in reference else None


class RegistryClient(RegistrySession):
    """The Distribution API of one registry host; thread-safe."""

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
        if (
            wanted is not None
            and wanted.supported
            and digest != wanted
            and media_type not in SCHEMA1_TYPES  # signed: the caller checks the JWS payload
        ):
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

    def mount_blob(self, repository: str, digest: Digest, source: str) -> bool | None:
        """Mount ``digest`` into ``repository`` from ``source``, another repository of this
        host, with one request: True when the registry did, False when it refused (the
        session it opened is cancelled), None when the request failed
        (:meth:`.upload.Uploader.mount`)."""
        return Uploader(self, repository).mount(digest, source)

    def upload_blob(
        self,
        repository: str,
        source: BlobSource,
        digest: Digest | None = None,
        size: int | None = None,
        *,
        chunk_size: int | None = None,
        monolithic_max: int = MONOLITHIC_MAX,
        mount_from: str | None = None,
        reopen: Callable[[], Readable] | None = None,
        check: bool = True,
    ) -> UploadResult:
        """Upload a blob unless present; see :class:`.upload.Uploader` for the strategy
        (``reopen``: a fresh reader of a single-pass ``source``'s bytes, for re-sends;
        ``check=False``: the caller has just seen the blob absent, so no ``HEAD`` first)."""
        uploader = Uploader(self, repository, chunk_size=chunk_size, monolithic_max=monolithic_max)
        return uploader.upload(
            source, digest, size, mount_from=mount_from, reopen=reopen, check=check
        )


# ---- helpers ---------------------------------------------------------------------------


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


def _next_link(values: list[str]) -> str | None:
    for value in values:
        for part in value.split(","):
            match = re.match(r"\s*<([^>]*)>\s*;(.*)", part)
            if match and re.search(r'rel\s*=\s*"?next"?', match.group(2)):
                return match.group(1)
    return None
