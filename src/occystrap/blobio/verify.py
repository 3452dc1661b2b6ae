"""Hash and count bytes as they stream past; check them against a descriptor.

``VerifyingReader`` is how every blob read from an untrusted source is checked:
too many bytes fail at once, too few or a wrong digest fail at end of stream.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import DigestMismatch, SizeMismatch
from ..model.digest import Digest
from .readers import CHUNK, Reader, ReaderBase, Writer, read_chunk


class Expected(Protocol):
    """What a blob should be: a Descriptor, or anything with these two attributes."""

    @property
    def digest(self) -> Digest: ...

    @property
    def size(self) -> int | None: ...


@dataclass(frozen=True)
class Expect:
    """The plainest :class:`Expected`: a digest, and the size when it is known."""

    digest: Digest
    size: int | None = None


class HashingReader(ReaderBase):
    """Pass bytes through, hashing and counting them; no checks."""

    def __init__(self, reader: Reader, algorithm: str = "sha256") -> None:
        self._source = reader
        self.algorithm = algorithm
        self._h: Any = hashlib.new(algorithm)
        self.size = 0
        self.eof = False

    def read(self, size: int = -1, /) -> bytes:
        assert self._source is not None
        data = self._source.read(size)
        if data:
            self._h.update(data)
            self.size += len(data)
        if (not data and size != 0) or size is None or size < 0:
            self.eof = True
        return data

    def read_chunk(self) -> bytes:
        assert self._source is not None
        data = read_chunk(self._source)
        if data:
            self._h.update(data)
            self.size += len(data)
        else:
            self.eof = True
        return data

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    def digest(self) -> Digest:
        """Digest of the bytes read so far (of the whole stream once ``eof``)."""
        return Digest(self.algorithm, self._h.hexdigest())


class VerifyingReader(HashingReader):
    """Raise SizeMismatch/DigestMismatch unless the stream matches ``expected``.

    More bytes than ``expected.size`` fail at once. The digest is checked as soon
    as exactly ``size`` bytes have arrived (or at end of stream when the size is
    unknown); a short stream fails at its end. ``what`` names the blob in errors.
    Call :meth:`finish` to read to the end and be sure.
    """

    def __init__(self, reader: Reader, expected: Expected, what: str) -> None:
        expected.digest.hasher()  # raise for an unsupported algorithm before reading
        super().__init__(reader, expected.digest.algorithm)
        self.expected_digest = expected.digest
        self.expected_size = expected.size
        self.what = what
        self._digest_ok = False

    @property
    def verified(self) -> bool:
        """True once the whole stream was read and matched."""
        return self.eof and self._digest_ok

    def read(self, size: int = -1, /) -> bytes:
        data = super().read(size)
        return self._checked(data, self.eof or size is None or size < 0)

    def read_chunk(self) -> bytes:
        return self._checked(super().read_chunk(), self.eof)

    def _checked(self, data: bytes, end: bool) -> bytes:
        expected_size = self.expected_size
        if data and expected_size is not None:
            if self.size > expected_size:
                raise SizeMismatch(self.what, expected_size, self.size)
            if self.size == expected_size and not self._digest_ok:
                self._check_digest()
        if end:
            self.eof = True
            if expected_size is not None and self.size != expected_size:
                raise SizeMismatch(self.what, expected_size, self.size)
            if not self._digest_ok:
                self._check_digest()
        return data

    def _check_digest(self) -> None:
        actual = self.digest()
        if actual != self.expected_digest:
            raise DigestMismatch(self.what, str(self.expected_digest), str(actual))
        self._digest_ok = True

    def finish(self) -> Digest:
        """Read what is left (discarding it), check, and return the verified digest."""
        while not self.eof:
            self.read(CHUNK)
        return self.expected_digest


class HashingWriter:
    """Write through to ``fileobj`` while hashing and counting."""

    def __init__(self, fileobj: Writer, algorithm: str = "sha256") -> None:
        self._f = fileobj
        self.algorithm = algorithm
        self._h: Any = hashlib.new(algorithm)
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self._h.update(data)
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.size += n
        self._f.write(data)
        return n

    def flush(self) -> None:
        flush = getattr(self._f, "flush", None)
        if flush is not None:
            flush()

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._h.hexdigest())
