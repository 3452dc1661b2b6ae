"""Checking that a stream is a well-formed tar while the caller reads it for another purpose.

Outputs that store plain layer tars (``tar://``, ``dir://``) would otherwise copy a layer
that is not a tar at all, or one cut short with a matching digest, into an image that looks
complete. :func:`checked_tar` hands the stream on unchanged while walking its headers in the
same thread, with the same parser (and checks) as :func:`~occystrap.tario.reader.iter_entries`:
the walker reads the stream in 1 MiB chunks, skipping over bodies, and every chunk it
reads is what the caller gets next. The walk stays at most a chunk or two (or one member's
extended headers) ahead of the caller, and a parse error is raised from the read that
reached it, before the bytes holding it are handed out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from ..errors import MalformedInput
from .reader import TarReader
from .source import CHUNK


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Recorder:
    """The stream the walker reads: each chunk is passed on and kept for the caller."""

    __slots__ = ("_read", "chunks", "size")

    def __init__(self, stream: Readable) -> None:
        self._read = stream.read
        self.chunks: deque[bytes] = deque()
        self.size = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self._read(n)
        if data:
            self.chunks.append(data)
            self.size += len(data)
        return data


class CheckedTar:
    """``read(n)`` gives the stream's bytes, exactly ``n`` unless it ends first; the tar
    structure of everything handed out has been checked."""

    def __init__(self, stream: Readable, what: str = "layer") -> None:
        self._rec = _Recorder(stream)
        self._walker = TarReader(self._rec, what=what, stepwise=True)
        self._more = True
        self.checked = False  # the whole stream was read and is a well-formed tar

    def read(self, n: int = -1, /) -> bytes:
        rec = self._rec
        if n is None or n < 0:
            return self.readall()
        while rec.size < n and self._more:
            self._more = self._walker.step()
            if not self._more:
                self.checked = True
        chunks = rec.chunks
        if not chunks or n == 0:
            return b""
        first = chunks[0]
        if len(first) == n:  # the common case: whole chunks asked for, whole chunks read
            chunks.popleft()
            rec.size -= n
            return first
        parts = []
        need = n
        while need and chunks:
            chunk = chunks.popleft()
            if len(chunk) > need:
                chunks.appendleft(chunk[need:])
                chunk = chunk[:need]
            parts.append(chunk)
            need -= len(chunk)
        rec.size -= n - need
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    def finish(self) -> int:
        """Read what is left (discarding it), so the whole stream is checked; return how
        many bytes that was."""
        left = 0
        while data := self.read(CHUNK):
            left += len(data)
        return left


@contextmanager
def checked_tar(stream: Readable, what: str = "layer") -> Iterator[CheckedTar]:
    """``stream`` unchanged, checked as tar on the way; MalformedInput (or LimitExceeded)
    from a read, or on leaving the block, when it is not a well-formed tar (a stream the
    caller did not read to its end counts as cut short there)."""
    checked = CheckedTar(stream, what)
    yield checked
    if checked.finish():
        raise MalformedInput(f"truncated tar in {what}: not read to its end")
