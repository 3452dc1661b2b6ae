"""Compatibility re-export: compression lives in :mod:`.decompress` and :mod:`.compress`."""

from __future__ import annotations

from .compress import (
    COMPRESSION_LEVELS,
    DEFAULT_GZIP_LEVEL,
    DEFAULT_ZSTD_LEVEL,
    GZIP_HEADER,
    Compressor,
    GzipCompressor,
    NullCompressor,
    ZstdCompressor,
    compressing_reader,
    make_compressor,
    validate_level,
)
from .decompress import (
    GZIP_MAGIC,
    ZSTD_MAGIC,
    Compression,
    ZstdFraming,
    as_compression,
    decompress_auto,
    decompressing_reader,
    detect,
    peek_compression,
)

__all__ = [
    "COMPRESSION_LEVELS",
    "DEFAULT_GZIP_LEVEL",
    "DEFAULT_ZSTD_LEVEL",
    "GZIP_HEADER",
    "GZIP_MAGIC",
    "ZSTD_MAGIC",
    "Compression",
    "Compressor",
    "GzipCompressor",
    "NullCompressor",
    "ZstdCompressor",
    "ZstdFraming",
    "as_compression",
    "compressing_reader",
    "decompress_auto",
    "decompressing_reader",
    "detect",
    "make_compressor",
    "peek_compression",
    "validate_level",
]
