"""What a blob upload sends: the blob's bytes from any offset, in 1 MiB pieces.

Kinds of :data:`BlobSource`:

* a callable returning a fresh reader: opened for each request (a seekable reader is
  positioned with ``seek``, another one skips forward);
* a seekable file: re-read from the position it had when the upload started;
* a single-pass reader (a download being streamed to the registry). With ``reopen`` (a
  callable returning a fresh reader of the same bytes) its bytes are sent as they are read, so
  memory does not grow with the blob. Bytes that must be sent again after a failed request
  come from a reader ``reopen`` returns; the single-pass reader then continues where it
  stopped, so it is still read once, to its end, and whoever watches it sees every byte.
  Without ``reopen`` the upload goes through :class:`Pieces`' buffer: one chunk at a time is
  read into memory and hashed, so that a chunk can be re-sent from there.

An error raised while reading the source (its download failed, its digest did not match) sets
:attr:`UploadSource.failed`: the uploader raises it instead of retrying the upload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ...errors import OccystrapError, OutputError, RegistryError, SizeMismatch
from ...model.digest import Digest, Hasher

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class Readable(Protocol):
    """What an upload reads from: ``read(n)``; ``seek``/``tell``/``seekable``/``close`` if it has them."""

    def read(self, n: int = -1, /) -> bytes: ...


BlobSource = Readable | Callable[[], Readable]
Body = bytes | Callable[[], Iterator[bytes]]


def _seekable(f: Any) -> bool:
    check = getattr(f, "seekable", None)
    return bool(check()) if callable(check) else False


def _close(f: Any) -> None:
    close = getattr(f, "close", None)
    if callable(close):
        close()


class UploadSource:
    """The bytes to upload, readable from an offset when the source allows it."""

    def __init__(
        self,
        source: BlobSource,
        what: str,
        reopen: Callable[[], Readable] | None = None,
        size: int | None = None,
    ) -> None:
        self.what, self.size = what, size
        self.failed = False
        self._opener: Callable[[], Readable] | None = None
        self._file: Any = None
        self._single: Readable | None = None
        self._reopen = reopen
        self._pos = 0  # bytes read from the single-pass reader so far
        self._opened: list[Any] = []
        self._base = 0
        if hasattr(source, "read"):
            if _seekable(source):
                handle: Any = source
                self._file, self._base = handle, int(handle.tell())
            else:
                self._single = source
        elif callable(source):
            self._opener = source
        else:
            raise TypeError("upload source must be a readable file or a callable returning one")

    @property
    def reopenable(self) -> bool:
        """Whether any byte range can be read again (so whole requests can be repeated)."""
        return self._single is None or self._reopen is not None

    def sequential(self) -> Readable:
        """A reader positioned at byte 0 (single-pass sources: the one and only reader)."""
        if self._single is not None:
            return self._single
        return self._at(self._opener, 0)

    def stream(self, offset: int, length: int) -> Iterator[bytes]:
        """Bytes ``offset`` to ``offset + length`` in pieces of up to 1 MiB."""
        end = offset + length
        if self._single is None:
            yield from self._range(self._opener, offset, end)
            return
        if offset < self._pos:  # read before: again, from a fresh copy
            upto = min(end, self._pos)
            log.info("%s: reading bytes %d-%d again to re-send them", self.what, offset, upto)
            yield from self._range(self._reopen, offset, upto)
            offset = upto
        if offset < end:
            self._skip(offset - self._pos)  # only when the registry holds more than was sent
            yield from self._pieces(self._single, end - offset, end)

    def _range(
        self, opener: Callable[[], Readable] | None, start: int, end: int
    ) -> Iterator[bytes]:
        f = self._at(opener, start)
        try:
            yield from self._pieces(f, end - start, end)
        finally:
            if f is not self._file:
                _close(f)

    def _pieces(self, f: Readable, length: int, end: int) -> Iterator[bytes]:
        left = length
        single = f is self._single
        while left:
            chunk = self.read_from(f, min(CHUNK, left))
            if not chunk:
                raise SizeMismatch(f"{self.what} (source)", end, end - left)
            left -= len(chunk)
            if single:
                self._pos += len(chunk)
                if self._pos == self.size:
                    self._check_end(f)
            yield chunk

    def _check_end(self, f: Readable) -> None:
        """Read the stream's end before its last bytes go out: the source checks its digest
        there, and a longer stream than announced is an error."""
        if self.read_from(f, 1):
            assert self.size is not None
            self.failed = True
            raise SizeMismatch(f"{self.what} (source)", self.size, self.size + 1)

    def _skip(self, n: int) -> None:
        assert self._single is not None
        while n > 0:
            chunk = self.read_from(self._single, min(CHUNK, n))
            if not chunk:
                raise SizeMismatch(f"{self.what} (source)", self._pos + n, self._pos)
            n -= len(chunk)
            self._pos += len(chunk)

    def read_from(self, f: Readable, n: int) -> bytes:
        try:
            return f.read(n)
        except OSError as e:
            self.failed = True
            raise OutputError(f"{self.what}: cannot read the source: {e.strerror or e}") from None
        except OccystrapError:
            self.failed = True
            raise

    def _at(self, opener: Callable[[], Readable] | None, offset: int) -> Readable:
        try:
            if self._file is not None:
                self._file.seek(self._base + offset)
                return self._file  # type: ignore[no-any-return]
            if opener is None:
                raise RegistryError(f"{self.what}: the source cannot be read again")
            f = opener()
            self._opened.append(f)
            if _seekable(f):
                handle: Any = f
                handle.seek(offset, 1)
            else:
                left = offset
                while left and (chunk := self.read_from(f, min(CHUNK, left))):
                    left -= len(chunk)
            return f
        except OSError as e:
            self.failed = True
            raise OutputError(f"{self.what}: cannot read the source: {e.strerror or e}") from None
        except OccystrapError:
            self.failed = True
            raise

    def close(self) -> None:
        for f in self._opened:
            _close(f)
        self._opened.clear()


class Pieces:
    """Hands out what the registry has not confirmed yet: streamed ranges of a re-readable
    source, or else from a buffer of one chunk (its 1 MiB pieces as read, hashed once)."""

    def __init__(
        self, source: UploadSource, size: int | None, digest: Digest | None, chunk: int
    ) -> None:
        self.source, self.size, self.chunk = source, size, chunk
        self.streamed = source.reopenable and size is not None and digest is not None
        self.hasher = Hasher(digest.algorithm if digest else "sha256")
        self._reader = None if self.streamed else source.sequential()
        self._parts: list[bytes] = []
        self._start = self._len = 0

    def next(self, offset: int) -> tuple[int, int, Body] | None:
        if self.streamed:
            assert self.size is not None
            if offset >= self.size:
                return None
            n = min(self.chunk, self.size - offset)
            return offset, n, lambda: self.source.stream(offset, n)
        end = self._start + self._len
        if not self._start <= offset <= end:
            raise RegistryError(
                f"{self.source.what}: the registry reports {offset} bytes, sent {end}",
                retryable=True,
            )
        if offset == end:
            self._fill(end)
            if not self._len:
                return None
        parts, skip = self._parts, offset - self._start
        return offset, self._start + self._len - offset, lambda: _after(parts, skip)

    def _fill(self, start: int) -> None:
        assert self._reader is not None
        self._parts, self._start, self._len = [], start, 0  # the previous chunk goes first
        while self._len < self.chunk and (
            piece := self.source.read_from(self._reader, min(CHUNK, self.chunk - self._len))
        ):
            self.hasher.update(piece)
            self._parts.append(piece)
            self._len += len(piece)


def _after(parts: list[bytes], skip: int) -> Iterator[bytes]:
    """The pieces without their first ``skip`` bytes."""
    for part in parts:
        if skip >= len(part):
            skip -= len(part)
            continue
        yield part[skip:] if skip else part
        skip = 0
