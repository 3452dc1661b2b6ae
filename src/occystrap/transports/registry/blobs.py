"""Blob downloads: a verifying reader that resumes with ``Range``, and resumable files.

:class:`BlobReader` streams one blob in 1 MiB chunks, counts and hashes it, and at EOF checks
the size, then the digest (:class:`SizeMismatch` / :class:`DigestMismatch` naming the blob).
When the connection drops or times out mid-body it asks again with ``Range: bytes=N-``
(bounded by the retry policy's attempts without progress); a ``206`` must start at ``N``, a
``200`` (Range ignored) has its first ``N`` bytes skipped. :func:`download_to` writes a blob
to a file through a ``.partial`` file plus an offset sidecar so that a later run can resume.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from ...errors import (
    BlobNotFound,
    DigestMismatch,
    IntegrityError,
    OutputError,
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
SYNC_EVERY = 64 << 20


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


def download_to(
    client: RegistryClient,
    repository: str,
    digest: Digest,
    size: int | None,
    dest_path: str | os.PathLike[str],
    partial_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Download a blob to ``dest_path`` (atomically, verified), resuming an earlier attempt.

    Progress lives in ``PARTIAL_DIR/ALG-HEX.partial`` and the sidecar ``….partial.json``
    (``{"digest", "size", "offset"}``, written after an fsync every 64 MiB and on failure).
    On resume the first ``offset`` bytes are re-hashed from disk, then the rest is fetched
    with ``Range``. A digest mismatch deletes the partial file.
    """
    dest = Path(dest_path)
    pdir = Path(partial_dir) if partial_dir is not None else dest.parent
    stem = f"{digest.algorithm}-{digest.encoded}"
    partial, sidecar = pdir / f"{stem}.partial", pdir / f"{stem}.partial.json"
    try:
        pdir.mkdir(parents=True, exist_ok=True)
        offset = _resume_offset(partial, sidecar, digest, size)
        hasher = Hasher(digest.algorithm)
        with open(partial, "r+b" if offset else "wb") as f:
            if offset:
                _rehash(f, offset, hasher)
                log.info("resuming blob %s at byte %d", digest, offset)
            try:
                total = _fill(client, f, repository, digest, size, offset, hasher, sidecar)
            except IntegrityError:
                f.close()
                _remove(partial, sidecar)
                raise
            except BaseException:
                _save_offset(f, sidecar, digest, size)
                raise
        os.replace(partial, dest)
        _remove(sidecar)
    except OSError as e:
        raise OutputError(
            f"cannot write blob {digest.short} to {dest}: {e.strerror or e}"
        ) from None
    return total


def _fill(
    client: RegistryClient,
    f: IO[bytes],
    repository: str,
    digest: Digest,
    size: int | None,
    offset: int,
    hasher: Hasher,
    sidecar: Path,
) -> int:
    what = f"blob {client.host}/{repository}@{digest}"
    if size is not None and offset == size:
        _check(what, digest, size, hasher)
    else:
        with BlobReader(client, repository, digest, size, start=offset, hasher=hasher) as reader:
            synced = offset
            for chunk in reader.chunks():
                f.write(chunk)
                if reader.position - synced >= SYNC_EVERY:
                    _save_offset(f, sidecar, digest, size)
                    synced = reader.position
    f.flush()
    os.fsync(f.fileno())
    return hasher.size


def _check(what: str, expected: Digest, size: int | None, hasher: Hasher) -> None:
    if size is not None and hasher.size != size:
        raise SizeMismatch(what, size, hasher.size)
    actual = hasher.digest()
    if actual != expected:
        raise DigestMismatch(what, str(expected), str(actual))


def _resume_offset(partial: Path, sidecar: Path, digest: Digest, size: int | None) -> int:
    try:
        state = json.loads(sidecar.read_text(encoding="utf-8"))
        offset = int(state["offset"])
        ok = state.get("digest") == str(digest) and 0 <= offset <= partial.stat().st_size
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0
    if not ok or (size is not None and offset > size):
        return 0
    return offset


def _rehash(f: IO[bytes], offset: int, hasher: Hasher) -> None:
    f.truncate(offset)
    f.seek(0)
    left = offset
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise OSError("partial file shrank while resuming")
        hasher.update(chunk)
        left -= len(chunk)
    f.seek(offset)


def _save_offset(f: IO[bytes], sidecar: Path, digest: Digest, size: int | None) -> None:
    try:
        f.flush()
        os.fsync(f.fileno())
        offset = f.tell()
        tmp = sidecar.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"digest": str(digest), "size": size, "offset": offset}), encoding="utf-8"
        )
        os.replace(tmp, sidecar)
    except (OSError, ValueError) as e:
        log.warning("cannot record download progress in %s: %s", sidecar, e)


def _remove(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
