"""Writing compressed layers reproducibly: push compressors and a compressing reader.

gzip goes through ISA-L (``isal``), zstd through ``zstandard``. Writing is
deterministic: the same input, level and pinned library versions give the same
bytes. For gzip that takes three things: a fixed header (MTIME 0, no FNAME,
XFL 0, OS 255, as Go's ``compress/gzip`` writes), raw deflate from one pinned
implementation with pinned settings, and input fed to it in fixed 1 MiB blocks,
because ISA-L's output depends on how the input is split. zstd output does not
depend on the split; single-threaded and multi-threaded output differ, but each
is deterministic, and multi-threaded output does not depend on the thread count.
Measurements behind the defaults: ``docs/dev/compression.md``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Protocol

import zstandard
from isal import isal_zlib

from ..errors import InvalidOption
from .decompress import Compression, as_compression
from .readers import CHUNK, Reader, ReaderBase

DEFAULT_GZIP_LEVEL = 1
DEFAULT_ZSTD_LEVEL = 3
COMPRESSION_LEVELS: Mapping[Compression, range] = {
    Compression.NONE: range(0),
    Compression.GZIP: range(4),  # ISA-L levels 0..3
    Compression.ZSTD: range(1, 23),
}
_DEFAULT_LEVELS = {Compression.GZIP: DEFAULT_GZIP_LEVEL, Compression.ZSTD: DEFAULT_ZSTD_LEVEL}

# Fixed gzip member header: magic, CM=deflate, FLG=0, MTIME=0, XFL=0, OS=255 (unknown).
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# Part of the output's identity: changing either changes every gzip digest we write.
_GZIP_BLOCK = 1 << 20  # ISA-L is fed exactly this many bytes per call
_GZIP_MEM_LEVEL = 8


def validate_level(compression: Compression | str, level: int | None) -> int:
    """Return the level to use (the default for ``None``); raise InvalidOption when out of range."""
    compression = as_compression(compression)
    if level is None:
        return _DEFAULT_LEVELS.get(compression, 0)
    valid = COMPRESSION_LEVELS[compression]
    if isinstance(level, bool) or not isinstance(level, int) or level not in valid:
        if not valid:
            raise InvalidOption(f"compression {compression} takes no level (got {level!r})")
        raise InvalidOption(
            f"{compression} compression level must be {valid.start}..{valid.stop - 1}, got {level!r}"
        )
    return level


class Compressor(Protocol):
    """Push-style compressor: feed ``compress`` chunks, then call ``flush`` once."""

    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class GzipCompressor:
    """Deterministic gzip (one member) through ISA-L raw deflate; see the module docstring."""

    def __init__(self, level: int = DEFAULT_GZIP_LEVEL) -> None:
        level = validate_level(Compression.GZIP, level)
        self._c = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15, _GZIP_MEM_LEVEL)
        self._crc = 0
        self._size = 0
        self._pending = bytearray()
        self._header = GZIP_HEADER
        self._finished = False

    def compress(self, data: bytes) -> bytes:
        if self._finished:
            raise ValueError("compressor already flushed")
        n = len(data)
        parts = [self._header]
        self._header = b""
        if n:
            self._crc = isal_zlib.crc32(data, self._crc)
            self._size += n
            pending, compress = self._pending, self._c.compress
            if not pending and n == _GZIP_BLOCK:
                parts.append(compress(data))
            else:
                view, pos = memoryview(data), 0
                if pending:
                    pos = min(_GZIP_BLOCK - len(pending), n)
                    pending += view[:pos]
                    if len(pending) == _GZIP_BLOCK:
                        parts.append(compress(pending))
                        pending.clear()
                while n - pos >= _GZIP_BLOCK:
                    parts.append(compress(view[pos : pos + _GZIP_BLOCK]))
                    pos += _GZIP_BLOCK
                if pos < n:
                    pending += view[pos:]
        return b"".join(parts)

    def flush(self) -> bytes:
        if self._finished:
            raise ValueError("compressor already flushed")
        self._finished = True
        parts = [self._header]
        if self._pending:
            parts.append(self._c.compress(self._pending))
            self._pending = bytearray()
        parts.append(self._c.flush(isal_zlib.Z_FINISH))
        parts.append(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))
        return b"".join(parts)


class ZstdCompressor:
    """One zstd frame, no content size, with a checksum; deterministic for a given thread mode."""

    def __init__(self, level: int = DEFAULT_ZSTD_LEVEL, threads: int = 0) -> None:
        level = validate_level(Compression.ZSTD, level)
        cctx = zstandard.ZstdCompressor(
            level=level, write_content_size=False, write_checksum=True, threads=threads
        )
        self._c = cctx.compressobj()
        self._finished = False

    def compress(self, data: bytes) -> bytes:
        if self._finished:
            raise ValueError("compressor already flushed")
        out: bytes = self._c.compress(data)
        return out

    def flush(self) -> bytes:
        if self._finished:
            raise ValueError("compressor already flushed")
        self._finished = True
        out: bytes = self._c.flush()
        return out


class NullCompressor:
    """``Compression.NONE``: bytes pass through."""

    def compress(self, data: bytes) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""


def make_compressor(
    compression: Compression | str, level: int | None = None, *, threads: int = 0
) -> Compressor:
    """A push-style compressor. ``threads`` (zstd only): 0 = in the caller's thread."""
    compression = as_compression(compression)
    level = validate_level(compression, level)
    if compression is Compression.GZIP:
        return GzipCompressor(level)
    if compression is Compression.ZSTD:
        return ZstdCompressor(level, threads)
    return NullCompressor()


class _CompressingReader(ReaderBase):
    def __init__(self, source: Reader, compressor: Compressor) -> None:
        self._source = source
        self._compressor = compressor
        self._out = bytearray()
        self._eof = False

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return self.readall()
        out = self._out
        source = self._source
        assert source is not None
        while len(out) < size and not self._eof:
            data = source.read(CHUNK)
            if data:
                out += self._compressor.compress(data)
            else:
                out += self._compressor.flush()
                self._eof = True
        if len(out) <= size:
            result = bytes(out)
            out.clear()
            return result
        with memoryview(out) as view, view[:size] as head:
            result = bytes(head)
        del out[:size]
        return result


def compressing_reader(
    reader: Reader, compression: Compression | str, level: int | None = None, *, threads: int = 0
) -> Reader:
    """Pull-style: read the compressed form of ``reader``."""
    compression = as_compression(compression)
    if compression is Compression.NONE:
        validate_level(compression, level)
        return reader
    return _CompressingReader(reader, make_compressor(compression, level, threads=threads))
