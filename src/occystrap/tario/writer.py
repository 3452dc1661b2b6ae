"""Tar writer: raw headers copied verbatim, changed headers re-encoded USTAR or PAX per member.

An entry whose ``raw_header`` is set is written byte for byte. Otherwise its header is
encoded from ``info`` by :func:`occystrap.tario.encode.encode_header`. Header-only types
(``1``-``6``) get size 0 and no data. Small members are gathered into >= 1 MiB writes; big
bodies go straight through in 1 MiB chunks. ``iter_tar_bytes`` is the same writer as a
generator of chunks. ``new_entry``, ``copy_info`` and ``rewrite_header`` build entries to
be encoded.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from ..errors import MalformedInput
from .encode import PAD, encode_header, pax_block
from .entry import BodyReader, MemberRun, ParsedInfo, TarEntry, source_of
from .reader import BLOCK, CHUNK, HEADER_ONLY, BytesBody

__all__ = [
    "TarWriter",
    "copy_info",
    "encode_header",
    "iter_tar_bytes",
    "new_entry",
    "pax_block",
    "rewrite_header",
]

_END = bytes(2 * BLOCK)
_MIRROR_OF = {"name": "path", "linkname": "linkpath", "size": "size", "uid": "uid", "gid": "gid"}
_MIRROR_OF |= {"uname": "uname", "gname": "gname", "mtime": "mtime"}
_INFO_ATTRS = (
    "name mode uid gid size mtime chksum type linkname uname gname devmajor devminor offset"
    " offset_data sparse"
).split()


class Writable(Protocol):
    def write(self, data: bytes, /) -> Any: ...


class _Core:
    """Header side of the writer: chooses raw or encoded headers, tracks global records."""

    __slots__ = ("buf", "force", "globals")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.globals: dict[str, str] = {}
        self.force: tuple[str, ...] = ()

    def header(self, entry: TarEntry) -> int:
        """Append ``entry``'s header to ``buf``; return how many body bytes must follow."""
        info = entry.info
        raw = entry.raw_header
        kind = info.type
        if kind == tarfile.XGLTYPE:
            for key, value in info.pax_headers.items():
                if value:
                    self.globals[key] = value
                else:
                    self.globals.pop(key, None)
            fields = ("uid", "gid", "uname", "gname", "mtime")
            self.force = tuple(k for k in fields if k in self.globals)
            if raw is None:
                self.buf += pax_block(info.pax_headers, tarfile.XGLTYPE)
                return 0
        if raw is not None:
            if len(raw) % BLOCK or not raw:
                raise ValueError(f"raw header of {info.name!r} is not whole 512-byte blocks")
            self.buf += raw
        else:
            self.buf += encode_header(info, force=self.force)
        size = 0 if kind in HEADER_ONLY else info.size
        if size and entry.body.remaining < size:
            left = entry.body.remaining
            raise ValueError(
                f"body of tar member {info.name!r} has only {left} of its {size} bytes left"
            )
        return size


def _short(info: tarfile.TarInfo, left: int) -> MalformedInput:
    return MalformedInput(f"body of tar member {info.name!r} ended {left} bytes early")


def _chunks(entry: TarEntry, size: int) -> Iterator[bytes]:
    """``size`` bytes of ``entry.body`` in pieces of at most 1 MiB."""
    body = entry.body
    left = size
    while left:
        data = body.read(min(left, CHUNK))
        if not data:
            raise _short(entry.info, left)
        left -= len(data)
        yield data


def _small_body(entry: TarEntry, size: int) -> bytes:
    data = entry.body.read(size)
    if len(data) != size:
        parts = [data]
        got = len(data)
        while got < size and (more := entry.body.read(size - got)):
            parts.append(more)
            got += len(more)
        if got < size:
            raise _short(entry.info, size - got)
        data = b"".join(parts)
    return data


def _trailer(total: int, record_size: int) -> bytes:
    """End-of-archive blocks, then zeros up to a multiple of ``record_size``."""
    total += len(_END)
    return _END + bytes(-total % record_size)


class TarWriter:
    """Write tar members to ``out`` (anything with ``write(bytes)``); ``close()`` ends it.

    ``record_size`` pads the archive to a multiple of it at close (512: just the two zero
    blocks, as Go and most layer producers do; 10240: GNU tar and Python's tarfile).
    ``bytes_written`` counts everything handed to ``out`` so far. ``out`` is not closed.
    """

    def __init__(self, out: Writable, *, record_size: int = BLOCK) -> None:
        if record_size <= 0 or record_size % BLOCK:
            raise ValueError("record_size must be a positive multiple of 512")
        self._out = out
        self._core = _Core()
        self._record_size = record_size
        self.bytes_written = 0
        self.closed = False

    def _flush(self) -> None:
        buf = self._core.buf
        if buf:
            self._core.buf = bytearray()
            self._out.write(bytes(buf))
            self.bytes_written += len(buf)

    def write_entry(self, entry: TarEntry) -> None:
        """Write one member: its header (raw or re-encoded), its body and the padding."""
        if self.closed:
            raise ValueError("write to a closed TarWriter")
        core = self._core
        size = core.header(entry)
        if size:
            if size <= CHUNK:
                core.buf += _small_body(entry, size)
            else:
                self._flush()
                for chunk in _chunks(entry, size):
                    self._out.write(chunk)
                    self.bytes_written += len(chunk)
            core.buf += PAD[-size % BLOCK]
        if len(core.buf) >= CHUNK:
            self._flush()

    def write_raw(self, data: bytes) -> None:
        """Append ready-made archive bytes (whole 512-byte blocks) as they are."""
        if len(data) % BLOCK:
            raise ValueError("raw tar data must be whole 512-byte blocks")
        self._core.buf += data
        if len(self._core.buf) >= CHUNK:
            self._flush()

    def close(self) -> int:
        """Write the end-of-archive marker and padding, flush; return the archive's size."""
        if not self.closed:
            self.closed = True
            pending = self.bytes_written + len(self._core.buf)
            self._core.buf += _trailer(pending, self._record_size)
            self._flush()
        return self.bytes_written


def iter_tar_bytes(
    entries: Iterable[TarEntry | MemberRun], *, record_size: int = BLOCK
) -> Iterator[bytes]:
    """The archive of ``entries`` as chunks of about 1 MiB (big bodies pass straight through).

    A :class:`MemberRun` among them is written as it is. Small pieces are collected in a
    list and joined once per chunk: growing one buffer instead reallocates and copies it
    many times per chunk.
    """
    if record_size <= 0 or record_size % BLOCK:
        raise ValueError("record_size must be a positive multiple of 512")
    core = _Core()
    headers = core.buf
    parts: list[bytes | memoryview] = []
    have = total = 0
    for entry in entries:
        if isinstance(entry, MemberRun):
            parts += entry.pieces
            have += entry.size
        else:
            size = core.header(entry)
            parts.append(bytes(headers))
            have += len(headers)
            headers.clear()
            if size:
                if size <= CHUNK:
                    parts.append(_small_body(entry, size))
                    have += size
                else:
                    if parts:
                        total += have
                        yield b"".join(parts)
                        parts.clear()
                        have = 0
                    for chunk in _chunks(entry, size):
                        total += len(chunk)
                        yield chunk
                if pad := PAD[-size % BLOCK]:
                    parts.append(pad)
                    have += len(pad)
        if have >= CHUNK:
            total += have
            yield b"".join(parts)
            parts.clear()
            have = 0
    parts.append(_trailer(total + have, record_size))
    yield b"".join(parts)


class _Limited:
    """At most ``remaining`` bytes of another readable."""

    __slots__ = ("_src", "remaining")

    def __init__(self, src: Any, size: int) -> None:
        self._src = src
        self.remaining = size

    def read(self, n: int = -1, /) -> bytes:
        if n < 0 or n > self.remaining:
            n = self.remaining
        data: bytes = self._src.read(n) if n else b""
        self.remaining -= len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def new_entry(info: tarfile.TarInfo, body: bytes | bytearray | Any = b"") -> TarEntry:
    """A synthesized entry to be encoded from ``info``.

    ``body`` is the data as bytes (``info.size`` is set to its length) or a readable
    that yields at least ``info.size`` bytes (only that many are taken).
    """
    if isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
        if info.type in HEADER_ONLY and data:
            raise ValueError(f"tar member {info.name!r} of type {info.type!r} takes no data")
        info.size = len(data)
        reader: BodyReader = BytesBody(data)
    else:
        reader = _Limited(body, 0 if info.type in HEADER_ONLY else info.size)
    return TarEntry(info, None, reader)


def copy_info(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A shallow copy of ``info`` with its own ``pax_headers`` dict (fast); a ParsedInfo's
    copy keeps its source block."""
    new = ParsedInfo(info.name)
    source = source_of(info)
    if source is not None:
        new.source = source
    new.mode, new.uid, new.gid, new.size, new.mtime = (
        info.mode,
        info.uid,
        info.gid,
        info.size,
        info.mtime,
    )
    new.chksum, new.type, new.linkname, new.uname, new.gname = (
        info.chksum,
        info.type,
        info.linkname,
        info.uname,
        info.gname,
    )
    new.devmajor, new.devminor, new.offset, new.offset_data, new.sparse = (
        info.devmajor,
        info.devminor,
        info.offset,
        info.offset_data,
        info.sparse,
    )
    new.pax_headers = dict(info.pax_headers)
    return new


def rewrite_header(entry: TarEntry, **changes: Any) -> TarEntry:
    """``entry`` with a copy of its ``info`` changed (``mtime=0``...), to be re-encoded.

    PAX records mirroring a changed field are dropped. Changing ``size`` is refused: build
    a new entry with :func:`new_entry` to change the data.
    """
    info = copy_info(entry.info)
    for key, value in changes.items():
        if key == "size" or key not in _INFO_ATTRS and key != "pax_headers":
            raise ValueError(f"cannot rewrite tar header field {key!r}")
        setattr(info, key, value)
    if "pax_headers" not in changes:
        stale = {_MIRROR_OF[k] for k in changes if k in _MIRROR_OF}
        if stale & info.pax_headers.keys():
            info.pax_headers = {k: v for k, v in info.pax_headers.items() if k not in stale}
    return TarEntry(info, None, entry.body)
