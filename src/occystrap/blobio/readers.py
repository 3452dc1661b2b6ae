"""Small binary readers that every input, output and filter plugs together.

A *reader* is anything with ``read(n=-1) -> bytes``. Every reader here keeps the
buffered-file contract: ``read(n)`` returns exactly ``n`` bytes unless the stream
ends first, and ``b""`` only at the end. Closing a wrapper closes what it wraps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from ..closing import Closing

CHUNK = 1 << 20
"""The chunk size used for every streaming copy: 1 MiB."""


class Reader(Protocol):
    """Anything that reads binary data; ``b""`` means end of stream."""

    def read(self, size: int = -1, /) -> bytes: ...


class Writer(Protocol):
    """Anything that accepts binary data."""

    def write(self, data: bytes, /) -> object: ...


class ReaderBase(Closing):
    """Shared plumbing: context manager, ``readable``, ``readall``, ``close``."""

    _source: Reader | None = None
    closed = False

    def read(self, size: int = -1, /) -> bytes:
        raise NotImplementedError

    def read_chunk(self) -> bytes:
        """About a chunk of the stream, in whatever piece is at hand; b"" at its end.

        For consumers that take bytes in any piece size (a file write, a hash): readers
        fed by chunks hand them over as they came, with no slicing or joining to make an
        exact size. The default is ``read(CHUNK)``.
        """
        return self.read(CHUNK)

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def read_chunk(reader: Reader) -> bytes:
    """``reader.read_chunk()`` when its class has one (:meth:`ReaderBase.read_chunk`), else
    ``reader.read(CHUNK)``. Looked up on the class: a wrapper that forwards unknown
    attributes to what it wraps (a tee) must not be bypassed."""
    if getattr(type(reader), "read_chunk", None) is not None:
        data: bytes = reader.read_chunk()  # type: ignore[attr-defined]
        return data
    return reader.read(CHUNK)


def read_full(reader: Reader, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at end of stream, whatever ``reader`` promises."""
    data = reader.read(size)
    if len(data) >= size or not data:
        return data
    parts = [data]
    have = len(data)
    while have < size:
        more = reader.read(size - have)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


class IterReader(ReaderBase):
    """Adapt an iterable of byte chunks (an HTTP body, a generator) to a reader."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] | None = iter(chunks)
        self._source = None
        self._buf = b""
        self._pos = 0
        self._owner = chunks

    def _next(self) -> bytes:
        while self._chunks is not None:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._chunks = None
            elif chunk:
                return bytes(chunk) if not isinstance(chunk, bytes) else chunk
        return b""

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return self.readall()
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail >= size:
            if pos == 0 and avail == size:
                self._buf = b""
                return buf
            self._pos = pos + size
            return buf[pos : pos + size]
        if avail == 0:
            # Fast path: hand a fresh chunk over untouched when it is exactly right.
            chunk = self._next()
            if len(chunk) <= size:
                self._buf, self._pos = b"", 0
                if len(chunk) == size or not chunk:
                    return chunk
                parts, have = [chunk], len(chunk)
            else:
                self._buf, self._pos = chunk, size
                return chunk[:size]
        else:
            parts, have = [buf[pos:]], avail
        self._buf, self._pos = b"", 0
        while have < size:
            chunk = self._next()
            if not chunk:
                break
            need = size - have
            if len(chunk) > need:
                parts.append(chunk[:need])
                self._buf, self._pos = chunk, need
                have = size
                break
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    def read_chunk(self) -> bytes:
        """What is left of the current chunk, or the next chunk, untouched."""
        buf, pos = self._buf, self._pos
        if pos < len(buf):
            self._buf, self._pos = b"", 0
            return buf[pos:] if pos else buf
        return self._next()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._chunks = None
        self._buf = b""
        close = getattr(self._owner, "close", None)
        if close is not None:
            close()


class ChainReader(ReaderBase):
    """``prefix`` first, then everything ``reader`` yields (used to replay peeked bytes)."""

    def __init__(self, prefix: bytes, reader: Reader) -> None:
        self._prefix = bytes(prefix)
        self._source = reader

    def read(self, size: int = -1, /) -> bytes:
        source = self._source
        assert source is not None
        prefix = self._prefix
        if not prefix:
            if size is None or size < 0:
                return self.readall()
            return read_full(source, size)
        if size is None or size < 0:
            self._prefix = b""
            return prefix + self.readall()
        if size <= len(prefix):
            self._prefix = prefix[size:]
            return prefix[:size]
        self._prefix = b""
        return prefix + read_full(source, size - len(prefix))

    def readall(self) -> bytes:
        prefix, self._prefix = self._prefix, b""
        parts = [prefix]
        source = self._source
        assert source is not None
        while chunk := source.read(CHUNK):
            parts.append(chunk)
        return b"".join(parts)


class LimitedReader(ReaderBase):
    """At most ``limit`` bytes of ``reader``; never reads past them."""

    def __init__(self, reader: Reader, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self._source = reader
        self.remaining = limit

    def read(self, size: int = -1, /) -> bytes:
        source = self._source
        assert source is not None
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        if size == 0:
            return b""
        data = read_full(source, size)
        self.remaining -= len(data)
        return data

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(CHUNK):
            parts.append(chunk)
        return b"".join(parts)


def copy_stream(src: Reader, dst: Writer, chunk: int = CHUNK) -> int:
    """Copy ``src`` to ``dst`` until end of stream; return the byte count.

    Uses ``readinto`` with one reused buffer when ``src`` offers it (real files,
    sockets), so a copy allocates nothing per chunk; otherwise ``read``.
    """
    total = 0
    readinto = getattr(src, "readinto", None)
    if readinto is not None:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while n := readinto(view):
            dst.write(view[:n] if n < chunk else view)  # type: ignore[arg-type]
            total += n
        return total
    read = src.read
    write = dst.write
    while data := read(chunk):
        write(data)
        total += len(data)
    return total


def drain(reader: Reader, chunk: int = CHUNK) -> int:
    """Read ``reader`` to its end, discarding the bytes; return how many there were."""
    total = 0
    readinto = getattr(reader, "readinto", None)
    if readinto is not None:
        view = memoryview(bytearray(chunk))
        while n := readinto(view):
            total += n
        return total
    while data := reader.read(chunk):
        total += len(data)
    return total


def iter_chunks(reader: Reader, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield ``reader``'s bytes in chunks of ``chunk`` (e.g. as an HTTP request body)."""
    while data := reader.read(chunk):
        yield data
