"""TarEntry: one member of a tar stream, with its original header bytes and a bounded body.

Also ``ParsedInfo``, the ``TarInfo`` the reader makes: it remembers the header block it was
parsed from (``SourceHeader``) so that a header whose only change is its mtime is written
as that block with the mtime patched in, not re-encoded (see
:func:`occystrap.tario.encode.encode_header`).
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import NamedTuple, Protocol

#: PAX records that carry nothing but a time (``mtime`` also mirrors the header field)
TIME_RECORDS = frozenset(("mtime", "atime", "ctime", "LIBARCHIVE.creationtime"))


class BodyReader(Protocol):
    """The body of one entry: at most ``remaining`` more bytes, then EOF."""

    remaining: int

    def read(self, n: int = -1, /) -> bytes: ...

    def readinto(self, buffer: bytearray | memoryview, /) -> int: ...


class SourceHeader(NamedTuple):
    """The USTAR (or plain GNU) header block a member was parsed from, and what it says.

    ``fields`` is ``(name, linkname, mode, uid, gid, size, type, uname, gname, devmajor,
    devminor)`` as parsed; ``checksum`` the block's (unsigned) checksum. Kept only for a
    member whose extended headers, if any, carry nothing but time records, so the block
    alone says everything else about the member.
    """

    block: bytes
    fields: tuple[object, ...]
    checksum: int


class ParsedInfo(tarfile.TarInfo):
    """A ``TarInfo`` with the header block it came from: ``source_of(info)`` gives it
    (None when unknown). The slot is left unset until known (cheaper than setting it)."""

    __slots__ = ("source",)
    source: SourceHeader | None


def source_of(info: tarfile.TarInfo) -> SourceHeader | None:
    """The header block ``info`` was parsed from, if it is a ParsedInfo that knows it."""
    return getattr(info, "source", None)


def header_fields(info: tarfile.TarInfo) -> tuple[object, ...]:
    """What a header says about ``info`` apart from times and PAX records (as in
    :attr:`SourceHeader.fields`)."""
    return (
        info.name,
        info.linkname,
        info.mode,
        info.uid,
        info.gid,
        info.size,
        info.type,
        info.uname,
        info.gname,
        info.devmajor,
        info.devminor,
    )


@dataclass(slots=True)
class TarEntry:
    """One tar member as read from a stream.

    ``info`` is the parsed header (``tarfile.TarInfo``; ``info.name`` and ``info.linkname``
    are the raw names from the archive, ``info.pax_headers`` holds the PAX records that
    survive parsing, e.g. ``SCHILY.xattr.*``). ``raw_header`` is the exact bytes of this
    member's header blocks as they were read (extended headers included), so an unchanged
    entry can be re-emitted byte for byte; a filter that changes ``info`` must set
    ``raw_header`` to None so the writer re-encodes it. (Re-encoding a ``ParsedInfo`` whose
    fields other than ``mtime`` still say what its source block says, with no PAX record
    left, patches the mtime into a copy of that block: changing only the mtime is cheap.)
    ``body`` streams the member's data (``info.size`` bytes; ``read(n)`` returns exactly
    ``min(n, remaining)`` bytes) and must be consumed or skipped before the next entry is
    read; the reader skips whatever is left and the body then reads as empty.

    Also yielded: PAX global headers (``info.type == b"g"``, records in ``info.pax_headers``,
    body = the raw records); keep them in a rewritten stream. Header-only types (hard and
    symbolic links, devices, directories, FIFOs) have an empty body. Sparse members arrive
    expanded as regular files with ``raw_header`` None.
    """

    info: tarfile.TarInfo
    raw_header: bytes | None
    body: BodyReader


@dataclass(slots=True)
class MemberRun:
    """Consecutive whole members as archive bytes (headers, data, padding), ready to be
    written as they are: what :meth:`TarReader.simple_run
    <occystrap.tario.reader.TarReader.simple_run>` gives instead of an entry per member.

    ``pieces`` joined are the ``size`` bytes; ``members`` counts the members, ``changed``
    those whose header was edited.
    """

    pieces: list[bytes | memoryview]
    size: int
    members: int
    changed: int
