"""Reading compressed layers: detect the compression, stream the decompressed bytes.

gzip goes through ISA-L (``isal``) and may have several members (zero padding between
them is skipped); zstd goes through ``zstandard`` with any number of frames, and a frame
walk (:class:`ZstdFraming`) tells a complete stream from a truncated one. Corrupt or cut
input raises ``MalformedInput``; an optional output limit raises ``LimitExceeded``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import IO, cast

import zstandard
from isal import igzip_lib

from ..errors import InvalidOption, LimitExceeded, MalformedInput
from .readers import CHUNK, ChainReader, Reader, ReaderBase, read_full


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# isal's stub declares IsalError as an instance; it is an Exception subclass.
_GZIP_ERRORS = (cast("type[Exception]", igzip_lib.IsalError), EOFError, ValueError)
_ERROR_PREFIX = re.compile(r"^(?:Error -?\d+ |zstd decompress error: )")


def detect(prefix: bytes) -> Compression:
    """The compression of a stream starting with ``prefix`` (4 bytes suffice)."""
    if prefix[:2] == GZIP_MAGIC:
        return Compression.GZIP
    if prefix[:4] == ZSTD_MAGIC or (prefix[1:4] == b"\x2a\x4d\x18" and prefix[0] & 0xF0 == 0x50):
        return Compression.ZSTD  # a zstd frame or a zstd skippable frame
    return Compression.NONE


def peek_compression(reader: Reader) -> tuple[Compression, Reader]:
    """Detect ``reader``'s compression; return it and a reader replaying every byte."""
    prefix = read_full(reader, 4)
    return detect(prefix), ChainReader(prefix, reader)


def as_compression(value: str) -> Compression:
    """``"gzip"`` etc. as a Compression; raise InvalidOption for anything else."""
    try:
        return Compression(value)
    except ValueError:
        raise InvalidOption(f"unknown compression {value!r}; expected none, gzip or zstd") from None


def _in(what: str | None) -> str:
    return f" in {what}" if what else ""


def _reason(error: BaseException) -> str:
    return _ERROR_PREFIX.sub("", str(error)).strip().lower() or type(error).__name__


class _Decompressing(ReaderBase):
    """Exact-size reads over ``_produce``, with the output limit check."""

    def __init__(self, source: Reader, limit: int | None, what: str | None) -> None:
        self._source = source
        self._limit = limit
        self._what = what
        self._total = 0
        self._done = False

    def _produce(self, want: int) -> bytes:
        """Up to ``want`` decompressed bytes; ``b""`` only at the end of the stream."""
        raise NotImplementedError

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return self.readall()
        parts = []
        have = 0
        while have < size and not self._done:
            want = size - have
            if self._limit is not None:
                want = min(want, self._limit - self._total + 1)
            out = self._produce(want)
            if not out:
                self._done = True
                break
            self._total += len(out)
            if self._limit is not None and self._total > self._limit:
                raise LimitExceeded(
                    f"decompressed data{_in(self._what)} exceeds the limit of {self._limit} bytes"
                )
            parts.append(out)
            have += len(out)
        return parts[0] if len(parts) == 1 else b"".join(parts)


class _GzipReader(_Decompressing):
    """gzip with any number of members; zero padding after a member is skipped."""

    def __init__(self, source: Reader, limit: int | None, what: str | None) -> None:
        super().__init__(source, limit, what)
        self._d: igzip_lib.IgzipDecompressor | None = igzip_lib.IgzipDecompressor(
            igzip_lib.DECOMP_GZIP
        )
        self._pending = b""

    def _produce(self, want: int) -> bytes:
        source = self._source
        assert source is not None
        while (d := self._d) is not None:
            if d.eof:
                self._next_member(d.unused_data)
                continue
            data = b""
            if d.needs_input:
                data, self._pending = self._pending or source.read(CHUNK), b""
                if not data:
                    raise MalformedInput(f"truncated gzip stream{_in(self._what)}")
            try:
                out: bytes = d.decompress(data, want)
            except _GZIP_ERRORS as e:
                raise MalformedInput(
                    f"corrupt gzip stream{_in(self._what)}: {_reason(e)}"
                ) from None
            if out:
                return out
        return b""

    def _next_member(self, leftover: bytes) -> None:
        source = self._source
        assert source is not None
        rest = leftover.lstrip(b"\0")
        while len(rest) < 2:
            data = source.read(CHUNK)
            if not data:
                break
            rest = (rest + data) if rest else data.lstrip(b"\0")
        if not rest:
            self._d = None  # clean end, perhaps after zero padding
        elif rest[:2] != GZIP_MAGIC:
            raise MalformedInput(f"trailing garbage after gzip stream{_in(self._what)}")
        else:
            self._d = igzip_lib.IgzipDecompressor(igzip_lib.DECOMP_GZIP)
            self._pending = rest


class ZstdFraming:
    """Follows zstd frame and block headers over the compressed bytes (RFC 8878 §3.1).

    ``zstandard``'s stream reader ends quietly at a cut inside a frame; this walk
    tells a complete stream from a truncated one at the cost of a few Python steps
    per block. Block contents are skipped, never decoded here.
    """

    _MAGIC, _HEADER, _BLOCK, _SKIPPABLE = range(4)

    def __init__(self, what: str) -> None:
        self._what = what
        self._state = self._MAGIC
        self._want = 4  # header bytes needed in the current state
        self._carry = b""
        self._skip = 0  # bytes to pass over (rest of a header, block body, checksum)
        self._checksum = 0
        self.frames = 0

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._want - len(self._carry), end - pos)
            header = self._carry + data[pos : pos + take] if self._carry else data[pos : pos + take]
            pos += take
            if len(header) < self._want:
                self._carry = header
                return
            self._carry = b""
            self._advance(header)

    def _advance(self, header: bytes) -> None:
        state = self._state
        if state == self._BLOCK:
            value = int.from_bytes(header, "little")
            kind = (value >> 1) & 3
            if kind == 3:
                raise MalformedInput(f"corrupt {self._what}: reserved block type")
            self._skip = 1 if kind == 1 else value >> 3
            if value & 1:  # last block: then the checksum, then the next frame
                self._skip += self._checksum
                self._state, self._want = self._MAGIC, 4
                self.frames += 1
        elif state == self._MAGIC:
            if header == ZSTD_MAGIC:
                self._state, self._want = self._HEADER, 1
            elif header[1:] == b"\x2a\x4d\x18" and header[0] & 0xF0 == 0x50:
                self._state, self._want = self._SKIPPABLE, 4
            else:
                raise MalformedInput(f"corrupt {self._what}: unknown frame magic {header.hex()}")
        elif state == self._HEADER:
            fhd = header[0]
            if fhd & 0x08:
                raise MalformedInput(f"corrupt {self._what}: reserved frame header bit set")
            single = (fhd >> 5) & 1
            fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
            self._skip = (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
            self._checksum = 4 if fhd & 0x04 else 0
            self._state, self._want = self._BLOCK, 3
        else:  # skippable frame: 4-byte little-endian length, then that many bytes
            self._skip = int.from_bytes(header, "little")
            self._state, self._want = self._MAGIC, 4
            self.frames += 1

    def finish(self) -> None:
        """At the end of input: raise MalformedInput unless the last frame was complete."""
        if self._skip or self._carry or self._state != self._MAGIC or not self.frames:
            raise MalformedInput(f"truncated {self._what}")


class _FramingTap(ReaderBase):
    """Passes the compressed bytes to zstandard while following the frame layout."""

    def __init__(self, source: Reader, framing: ZstdFraming) -> None:
        self._source = source
        self._framing = framing

    def read(self, size: int = -1, /) -> bytes:
        assert self._source is not None
        data = self._source.read(size)
        self._framing.feed(data)
        return data


class _ZstdReader(_Decompressing):
    """zstd with any number of frames (skippable ones too); truncation is detected."""

    def __init__(self, source: Reader, limit: int | None, what: str | None) -> None:
        super().__init__(source, limit, what)
        self._framing = ZstdFraming(f"zstd stream{_in(what)}")
        tap = _FramingTap(source, self._framing)
        self._z = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], tap), read_size=CHUNK, read_across_frames=True, closefd=False
        )

    def _produce(self, want: int) -> bytes:
        try:
            out: bytes = self._z.read(want)
        except zstandard.ZstdError as e:
            raise MalformedInput(f"corrupt zstd stream{_in(self._what)}: {_reason(e)}") from None
        if not out:
            self._framing.finish()
        return out

    def close(self) -> None:
        self._z.close()  # type: ignore[no-untyped-call]
        super().close()


def decompressing_reader(
    reader: Reader,
    compression: Compression | str,
    *,
    limit: int | None = None,
    what: str | None = None,
) -> Reader:
    """Stream the decompressed bytes of ``reader``.

    ``limit`` caps the decompressed size (LimitExceeded beyond it); ``what`` names
    the blob in error messages. Truncated or corrupt input raises MalformedInput.
    """
    compression = as_compression(compression)
    if compression is Compression.GZIP:
        return _GzipReader(reader, limit, what)
    if compression is Compression.ZSTD:
        return _ZstdReader(reader, limit, what)
    if limit is None:
        return reader
    return _PlainReader(reader, limit, what)


class _PlainReader(_Decompressing):
    def _produce(self, want: int) -> bytes:
        assert self._source is not None
        return self._source.read(want)


def decompress_auto(
    reader: Reader, *, limit: int | None = None, what: str | None = None
) -> tuple[Compression, Reader]:
    """Detect the compression of ``reader`` and stream its decompressed bytes."""
    compression, replay = peek_compression(reader)
    return compression, decompressing_reader(replay, compression, limit=limit, what=what)
