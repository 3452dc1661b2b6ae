"""Byte-stream plumbing shared by every input, output and filter.

Readers (``read(n) -> bytes``), compression detection and streaming
(de)compression, hashing and verification, spooling and atomic files, and
``observe_copy`` (a second thread reading a copy of a stream).
"""

from __future__ import annotations

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
from .spool import SpooledBlob, atomic_write, spool
from .tee import Tap, observe_copy
from .verify import HashingReader, HashingWriter, VerifyingReader

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
    "spool",
    "validate_level",
]
