"""TarEntry: one member of a tar stream, with its original header bytes and a bounded body."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import Protocol


class BodyReader(Protocol):
    """The body of one entry: at most ``remaining`` more bytes, then EOF."""

    remaining: int

    def read(self, n: int = -1, /) -> bytes: ...

    def readinto(self, buffer: bytearray | memoryview, /) -> int: ...


@dataclass(slots=True)
class TarEntry:
    """One tar member as read from a stream.

    ``info`` is the parsed header (``tarfile.TarInfo``; ``info.name`` and ``info.linkname``
    are the raw names from the archive, ``info.pax_headers`` holds the PAX records that
    survive parsing, e.g. ``SCHILY.xattr.*``). ``raw_header`` is the exact bytes of this
    member's header blocks as they were read (extended headers included), so an unchanged
    entry can be re-emitted byte for byte; a filter that changes ``info`` must set
    ``raw_header`` to None so the writer re-encodes it. ``body`` streams the member's data
    (``info.size`` bytes; ``read(n)`` returns exactly ``min(n, remaining)`` bytes) and must
    be consumed or skipped before the next entry is read; the reader skips whatever is left
    and the body then reads as empty.

    Also yielded: PAX global headers (``info.type == b"g"``, records in ``info.pax_headers``,
    body = the raw records); keep them in a rewritten stream. Header-only types (hard and
    symbolic links, devices, directories, FIFOs) have an empty body. Sparse members arrive
    expanded as regular files with ``raw_header`` None.
    """

    info: tarfile.TarInfo
    raw_header: bytes | None
    body: BodyReader
