"""Streaming tar reading and writing at the header level.

``iter_entries(stream)`` reads members one pass without seeking; ``TarWriter`` /
``iter_tar_bytes`` write them back, copying unchanged headers verbatim and re-encoding
changed ones as USTAR (or PAX only when needed). ``paths`` holds member-path helpers.
"""

from .entry import BodyReader, TarEntry
from .reader import BytesBody, TarReader, iter_entries
from .writer import (
    TarWriter,
    copy_info,
    encode_header,
    iter_tar_bytes,
    new_entry,
    rewrite_header,
)

__all__ = [
    "BodyReader",
    "BytesBody",
    "TarEntry",
    "TarReader",
    "TarWriter",
    "copy_info",
    "encode_header",
    "iter_entries",
    "iter_tar_bytes",
    "new_entry",
    "rewrite_header",
]
