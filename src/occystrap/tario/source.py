"""The byte side of the tar reader: a forward-only buffered source and member bodies.

``Source`` reads big chunks from any object with ``read(n)`` and never seeks; ``Body``
streams one member's data from it; ``BytesBody`` is a body held in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..errors import MalformedInput

BLOCK = 512
CHUNK = 1 << 20
_MAX_READ = 64 << 20  # one stream.read() call


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Source:
    """Buffered, counted, forward-only view of a stream: big reads, no seeks."""

    __slots__ = ("_base", "_buf", "_pos", "_stream")

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._buf = b""
        self._pos = 0
        self._base = 0  # stream offset of _buf[0]

    def tell(self) -> int:
        return self._base + self._pos

    def read(self, n: int) -> bytes:
        """``n`` bytes, fewer only at the end of the stream."""
        pos, buf = self._pos, self._buf
        if pos + n <= len(buf):
            self._pos = pos + n
            return buf[pos : pos + n]
        parts = [buf[pos:]] if pos < len(buf) else []
        need = pos + n - len(buf)
        self._base += len(buf)
        self._buf, self._pos = b"", 0
        if need >= CHUNK:  # big body read: straight from the stream, no buffering
            while need > 0 and (data := self._stream.read(min(need, _MAX_READ))):
                parts.append(data)
                need -= len(data)
                self._base += len(data)
        else:
            filled: list[bytes] = []
            got = 0
            while got < need and (data := self._stream.read(CHUNK)):
                filled.append(data)
                got += len(data)
            buf = filled[0] if len(filled) == 1 else b"".join(filled)
            parts.append(buf[:need])
            self._buf, self._pos = buf, min(need, len(buf))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def window(self) -> tuple[bytes, int]:
        """The buffered bytes and the position of the next unread one among them."""
        return self._buf, self._pos

    def advance(self, n: int) -> None:
        """Consume ``n`` bytes of the window (no more than it holds)."""
        self._pos += n

    def skip(self, n: int) -> int:
        """Discard up to ``n`` bytes (read, never seek); return how many there were.

        The stream is read in whole chunks; what follows the skipped bytes stays buffered.
        """
        avail = len(self._buf) - self._pos
        if n <= avail:
            self._pos += n
            return n
        self._base += len(self._buf)
        self._buf, self._pos = b"", 0
        done = avail
        read = self._stream.read
        while done < n and (data := read(CHUNK)):
            if done + len(data) > n:
                self._buf, self._pos = data, n - done
                return n
            done += len(data)
            self._base += len(data)
        return done


class BodyBase:
    """What every member body offers: ``read``, ``readinto`` and ``abandon``."""

    __slots__ = ("remaining",)
    remaining: int

    def read(self, n: int = -1, /) -> bytes:
        raise NotImplementedError

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def abandon(self) -> int:
        """Stop reading; return how many archive bytes of this body were left unread."""
        left, self.remaining = self.remaining, 0
        return left


class Body(BodyBase):
    """The data of one member: ``remaining`` more bytes taken from the archive stream."""

    __slots__ = ("_src", "_truncated")

    def __init__(self, src: Source, size: int, truncated: Callable[[], MalformedInput]) -> None:
        self._src = src
        self._truncated = truncated
        self.remaining = size

    def read(self, n: int = -1, /) -> bytes:
        """Exactly ``min(n, remaining)`` bytes (all that remain when ``n`` < 0)."""
        left = self.remaining
        if n < 0 or n > left:
            n = left
        if n == 0:
            return b""
        data = self._src.read(n)
        self.remaining = left - len(data)
        if len(data) < n:
            raise self._truncated()
        return data


class BytesBody(BodyBase):
    """A body held in memory (synthesized small data, global header records)."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self.remaining = len(data)

    def read(self, n: int = -1, /) -> bytes:
        if n < 0 or n > self.remaining:
            n = self.remaining
        pos = self._pos
        self._pos, self.remaining = pos + n, self.remaining - n
        return self._data[pos : pos + n]

    def abandon(self) -> int:
        self.remaining = 0
        return 0
