"""Tar members and header blocks built with Python's tarfile, for the tar tests."""

from __future__ import annotations

import tarfile
from typing import Any

MTIME = 1_700_000_000


def member(name: str, kind: bytes = tarfile.REGTYPE, **fields: Any) -> tarfile.TarInfo:
    """A TarInfo of ``kind`` with mtime MTIME and any other ``fields`` set."""
    info = tarfile.TarInfo(name)
    info.type, info.mtime = kind, MTIME
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def with_checksum(block: bytes) -> bytes:
    """``block`` with its (unsigned) header checksum recomputed."""
    block = block[:148] + b"        " + block[156:]
    return block[:148] + b"%06o\0 " % sum(block) + block[156:]
