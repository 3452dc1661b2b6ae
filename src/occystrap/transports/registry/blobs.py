"""Blob downloads: a verifying reader that resumes with ``Range``.

:class:`BlobReader` streams one blob in 1 MiB chunks, counts and hashes it, and at EOF checks
the size, then the digest (:class:`SizeMismatch` / :class:`DigestMismatch` naming the blob).
When the connection drops or times out mid-body it asks again with ``Range: bytes=N-``
(bounded by the retry policy's attempts without progress); a ``206`` must start at ``N``, a
``200`` (Range ignored) has its first ``N`` bytes skipped. Resuming across runs is
:mod:`.fetch`'s job (the partial files of :mod:`.blobcache`).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx

from ...errors import (
    BlobNotFound,
    DigestMismatch,
    RegistryError,
    SizeMismatch,
    TransportError,
    UnsupportedFormat,
)
from ...model.digest import Digest, Hasher
from . import body
from . import retry as retrying
from .auth import repository_scope
from .credentials import RedactingFilter

if TYPE_CHECKING:
    from .client import RegistryClient

log = logging.getLogger(__name__)
log.addFilter(RedactingFilter())

CHUNK = 1 << 20


class BlobReader(io.RawIOBase):
    """Streams one blob; at EOF checks size then digest; resumes with Range after a drop."""

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        digest: Digest,
        size: int | None,
        *,
        start: int = 0,
        hasher: Hasher | None = None,
    ) -> None:
        super().__init__()
        if not digest.supported:
            raise UnsupportedFormat(
                f"unsupported digest algorithm {digest.algorithm!r} for blob {digest}"
            )
        self.client, self.repository, self.expected, self.size = client, repository, digest, size
        self.what = f"blob {client.host}/{repository}@{digest}"
        self.position = start
        self.resumes = 0
        self.verified = False
        self._hasher = hasher or Hasher(digest.algorithm)
        self._skip = 0
        self._failures = 0
        self._dropped: Exception | None = None
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] = iter(())
        self._pending = memoryview(b"")
        self._carry = b""
        self._open()

    def _open(self) -> None:
        headers = {"Accept-Encoding": "identity"}
        if self.position:
            headers["Range"] = f"bytes={self.position}-"
        url = self.client.url(self.repository, "blobs", str(self.expected))
        scopes = (repository_scope(self.repository),)
        response = self.client.request_stream(
            "GET", url, scopes=scopes, what=self.what, headers=headers
        )
        status = response.status_code
        if status == 206:
            match = re.match(
                r"bytes\s+(\d+)-(\d+)/(\d+|\*)", response.headers.get("content-range", "")
            )
            if match is None or int(match.group(1)) != self.position:
                response.close()
                raise RegistryError(f"{self.what}: the server resumed at the wrong offset", 206)
            self._skip = 0
        elif status == 200:
            self._skip = self.position
            length = response.headers.get("content-length", "")
            if self.size is not None and length.isdigit() and int(length) != self.size:
                response.close()
                raise SizeMismatch(self.what, self.size, int(length))
        else:
            self.client.fail(response, self.what, self.repository, BlobNotFound)
        self._response = response
        self._chunks = body.chunks(response)  # as it arrives: a drop loses nothing received

    def _next_chunk(self) -> bytes | None:
        """Exactly 1 MiB (less only at the end or before a drop, whose bytes are delivered
        first; then it resumes). Whole chunks pass through readers without being cut again."""
        if self._dropped is not None:
            error, self._dropped = self._dropped, None
            self._resume(error)
        pieces: list[bytes] = []
        have = 0
        if self._carry:  # received, not delivered yet; no drop is pending while it exists
            head, self._carry = self._carry[:CHUNK], self._carry[CHUNK:]
            pieces.append(head)
            have = len(head)
        while have < CHUNK:
            try:
                piece = next(self._chunks)
            except StopIteration:
                break
            except retrying.RETRYABLE_ERRORS as e:
                if have:  # keep what arrived: resume after it, on the next call
                    self._dropped = e
                    break
                self._resume(e)
                continue
            if self._skip:
                cut = min(self._skip, len(piece))
                piece, self._skip = piece[cut:], self._skip - cut
            if len(piece) > CHUNK - have:
                piece, self._carry = piece[: CHUNK - have], piece[CHUNK - have :]
            if piece:
                pieces.append(piece)
                have += len(piece)
        if not have:
            return None
        chunk = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._failures = 0
        self.position += len(chunk)
        if self.size is not None and self.position > self.size:
            raise SizeMismatch(self.what, self.size, self.position)
        self._hasher.update(chunk)
        self.client.stats.add(bytes_downloaded=len(chunk))
        return chunk

    def _resume(self, error: Exception) -> None:
        self._close_response()
        self._failures += 1
        if self._failures >= self.client.retry.attempts:
            raise TransportError(
                f"{self.what}: {retrying.describe(error)} at byte {self.position}"
            ) from error
        wait = self.client.retry.delay(self._failures)
        log.info(
            "%s: %s at byte %d; resuming in %.1fs",
            self.what,
            retrying.describe(error),
            self.position,
            wait,
        )
        self.client.sleep(wait)
        self.resumes += 1
        self.client.stats.add(resumes=1, retries=1)
        self._open()

    def _finish(self) -> None:
        self._close_response()
        if not self.verified:
            if self.size is not None and self.position != self.size:
                raise SizeMismatch(self.what, self.size, self.position)
            _check(self.what, self.expected, None, self._hasher)
            self.verified = True

    def chunks(self) -> Iterator[bytes]:
        """The remaining bytes in chunks of up to 1 MiB (verified when exhausted)."""
        if self._pending:
            rest, self._pending = bytes(self._pending), memoryview(b"")
            yield rest
        while (chunk := self._next_chunk()) is not None:
            yield chunk
        self._finish()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self.verified:
                return 0
            chunk = self._next_chunk()
            if chunk is None:
                self._finish()
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def digest(self) -> Digest:
        return self._hasher.digest()

    def _close_response(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def close(self) -> None:
        self._close_response()
        super().close()


def _check(what: str, expected: Digest, size: int | None, hasher: Hasher) -> None:
    if size is not None and hasher.size != size:
        raise SizeMismatch(what, size, hasher.size)
    actual = hasher.digest()
    if actual != expected:
        raise DigestMismatch(what, str(expected), str(actual))
