"""Bare-bones tar walking for the floors: find layers in a docker-save tarball, read headers.

This is deliberately minimal (USTAR fields only, no PAX interpretation): the floors measure
the cost of the unavoidable work, not a complete tar implementation.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

BLOCK = 512
CHUNK = 1 << 20


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


@dataclass(frozen=True)
class Member:
    """A header of an inner (layer) tar. ``header`` is the raw 512-byte block, mutable."""

    header: bytearray
    name: str
    type: bytes
    size: int
    linkname: str
    mode: int
    mtime: int


def docker_layers(path: str) -> list[tuple[int, int]]:
    """(offset, size) of each layer tar inside a docker-save tarball, in manifest order."""
    with tarfile.open(path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        handle = tar.extractfile(members["manifest.json"])
        assert handle is not None
        manifest = json.loads(handle.read())
        return [(members[p].offset_data, members[p].size) for p in manifest[0]["Layers"]]


def _octal(field: bytes | bytearray) -> int:
    if field and field[0] & 0x80:  # base-256
        return int.from_bytes(bytes(field[1:]), "big")
    text = bytes(field).split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _text(field: bytes | bytearray) -> str:
    return bytes(field).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def members(f: Reader) -> Iterator[Member]:
    """Headers of the tar read from ``f``; the caller must consume each member's body
    (``padded(size)`` bytes) before asking for the next header."""
    while True:
        header = bytearray(f.read(BLOCK))
        if len(header) < BLOCK or not any(header):
            return
        prefix = _text(header[345:500])
        name = _text(header[0:100])
        yield Member(
            header=header,
            name=f"{prefix}/{name}" if prefix else name,
            type=bytes(header[156:157]),
            size=_octal(header[124:136]),
            linkname=_text(header[157:257]),
            mode=_octal(header[100:108]),
            mtime=_octal(header[136:148]),
        )


def padded(size: int) -> int:
    return size + (-size % BLOCK)


def set_mtime(header: bytearray, mtime: int) -> None:
    """Rewrite the mtime field and the checksum of a USTAR header in place."""
    header[136:148] = b"%011o\0" % mtime
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)


def copy_body(f: Reader, size: int, sinks: list[BinaryIO], hashers: list[Hasher]) -> None:
    """Copy ``size`` bytes (already padded) from ``f`` to every sink, updating hashers."""
    while size > 0:
        data = f.read(min(CHUNK, size))
        if not data:
            raise EOFError("tar ends inside a member")
        size -= len(data)
        for sink in sinks:
            sink.write(data)
        for hasher in hashers:
            hasher.update(data)


class Slice:
    """A read-only window ``[offset, offset + size)`` of an open file."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self.f, self.left = f, size
        f.seek(offset)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data
