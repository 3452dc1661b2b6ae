"""Fixed 512-byte USTAR headers for the outer archive (root-owned, mtime 0).

A size of 8 GiB or more does not fit USTAR's 11 octal digits; it is written in the GNU
base-256 form that Go's archive/tar (docker, podman, skopeo) and Python's tarfile read.
The header length never depends on the values, so a placeholder can be patched in place.
"""

from __future__ import annotations

BLOCK = 512
REGTYPE = b"0"
DIRTYPE = b"5"
END_OF_ARCHIVE = bytes(2 * BLOCK)


def header(name: str, size: int = 0, kind: bytes = REGTYPE, mode: int = 0o644) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) > 100:
        raise ValueError(f"member name too long for this writer: {name!r}")
    b = bytearray(BLOCK)
    b[0 : len(raw)] = raw
    b[100:108] = b"%07o\0" % mode
    b[108:116] = b"%07o\0" % 0
    b[116:124] = b"%07o\0" % 0
    if size < 8**11:
        b[124:136] = b"%011o\0" % size
    else:
        field = bytearray(size.to_bytes(12, "big"))
        field[0] |= 0x80
        b[124:136] = field
    b[136:148] = b"%011o\0" % 0
    b[148:156] = b" " * 8
    b[156:157] = kind
    b[257:265] = b"ustar\x0000"
    b[329:337] = b"%07o\0" % 0
    b[337:345] = b"%07o\0" % 0
    b[148:156] = b"%06o\0 " % sum(b)
    return bytes(b)


def padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def member(name: str, data: bytes, mode: int = 0o644) -> bytes:
    """A whole small regular-file member: header, data, padding."""
    return header(name, len(data), REGTYPE, mode) + data + padding(len(data))
