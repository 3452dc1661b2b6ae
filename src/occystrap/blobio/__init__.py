"""Byte-stream plumbing shared by every input, output and filter.

Readers (``read(n) -> bytes``), compression detection and streaming
(de)compression, hashing and verification, spooling and atomic files, and
``observe_copy`` (a second thread reading a copy of a stream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import exports

if TYPE_CHECKING:  # the names below, imported on first use (start-up time matters)
    from .compress import (
        COMPRESSION_LEVELS,
        DEFAULT_GZIP_LEVEL,
        DEFAULT_ZSTD_LEVEL,
        Compressor,
        compressing_reader,
        make_compressor,
        validate_level,
    )
    from .decompress import (
        Compression,
        as_compression,
        decompress_auto,
        decompressing_reader,
        detect,
        peek_compression,
    )
    from .readers import (
        CHUNK,
        ChainReader,
        IterReader,
        LimitedReader,
        Reader,
        Writer,
        copy_stream,
        drain,
        iter_chunks,
        read_full,
    )
    from .spool import SpooledBlob, atomic_write  # spool(): from .spool (the name is the module)
    from .tee import Tap, observe_copy
    from .verify import HashingReader, HashingWriter, VerifyingReader

_WHERE = {
    "CHUNK": "readers",
    "COMPRESSION_LEVELS": "compress",
    "ChainReader": "readers",
    "Compression": "decompress",
    "Compressor": "compress",
    "DEFAULT_GZIP_LEVEL": "compress",
    "DEFAULT_ZSTD_LEVEL": "compress",
    "HashingReader": "verify",
    "HashingWriter": "verify",
    "IterReader": "readers",
    "LimitedReader": "readers",
    "Reader": "readers",
    "SpooledBlob": "spool",
    "Tap": "tee",
    "VerifyingReader": "verify",
    "Writer": "readers",
    "as_compression": "decompress",
    "atomic_write": "spool",
    "compressing_reader": "compress",
    "copy_stream": "readers",
    "decompress_auto": "decompress",
    "decompressing_reader": "decompress",
    "detect": "decompress",
    "drain": "readers",
    "iter_chunks": "readers",
    "make_compressor": "compress",
    "observe_copy": "tee",
    "peek_compression": "decompress",
    "read_full": "readers",
    "validate_level": "compress",
}

__getattr__ = exports(__name__, _WHERE)


__all__ = [
    "CHUNK",
    "COMPRESSION_LEVELS",
    "DEFAULT_GZIP_LEVEL",
    "DEFAULT_ZSTD_LEVEL",
    "ChainReader",
    "Compression",
    "Compressor",
    "HashingReader",
    "HashingWriter",
    "IterReader",
    "LimitedReader",
    "Reader",
    "SpooledBlob",
    "Tap",
    "VerifyingReader",
    "Writer",
    "as_compression",
    "atomic_write",
    "compressing_reader",
    "copy_stream",
    "decompress_auto",
    "decompressing_reader",
    "detect",
    "drain",
    "iter_chunks",
    "make_compressor",
    "observe_copy",
    "peek_compression",
    "read_full",
    "validate_level",
]
