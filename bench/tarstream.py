"""Write a layer tar as a stream: headers (PAX format, root-owned), generated bodies, padding.

``entry_chunks`` turns a layer plan (``bench.plan``) into tar bytes in pieces of any size,
adding parent directory entries; ``rechunk`` joins them into ~1 MiB chunks. Text bodies come
from ``bench.textgen``, incompressible ones from a seeded ``random.Random``.
"""

from __future__ import annotations

import random
import tarfile
from collections.abc import Iterable, Iterator

from . import plan
from .plan import Entry
from .textgen import TextGen

CHUNK = 1 << 20
_TYPES = {
    "dir": tarfile.DIRTYPE,
    "file": tarfile.REGTYPE,
    "random": tarfile.REGTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
}


def _header(entry: Entry) -> bytes:
    info = tarfile.TarInfo(entry.path)
    info.type = _TYPES[entry.type]
    info.size = entry.size if entry.type in ("file", "random") else 0
    info.mode, info.mtime = entry.mode, entry.mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.linkname = entry.link
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _pad(size: int) -> bytes:
    return bytes(-size % tarfile.BLOCKSIZE)


def entry_chunks(entries: Iterable[Entry], seed: int) -> Iterator[bytes]:
    """The tar stream of ``entries`` (parent directories added), in pieces of any size."""
    rng = random.Random(seed)
    text: TextGen | None = None
    done: set[str] = set()
    written = 0
    for entry in entries:
        parts = entry.path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent not in done:
                done.add(parent)
                head = _header(Entry(parent, "dir", mode=0o755, mtime=plan.MTIME_BASE))
                written += len(head)
                yield head
        head = _header(entry)
        written += len(head)
        yield head
        if entry.type == "file" and entry.size:
            text = text or TextGen(seed)
            body = text.file_bytes(entry.kind, entry.size)
            yield body + _pad(len(body))
            written += len(body) + len(_pad(len(body)))
        elif entry.type == "random":
            left = entry.size
            while left:
                n = min(CHUNK, left)
                yield rng.randbytes(n)
                left -= n
            yield _pad(entry.size)
            written += entry.size + len(_pad(entry.size))
    end = bytes(2 * tarfile.BLOCKSIZE)
    written += len(end)
    yield end + bytes(-written % tarfile.RECORDSIZE)


def rechunk(pieces: Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Join small pieces into chunks of at least ``size`` bytes (big pieces pass as they are)."""
    buf = bytearray()
    for piece in pieces:
        if not buf and len(piece) >= size:
            yield piece
            continue
        buf += piece
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)
