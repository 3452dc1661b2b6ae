"""Decoding the fields of a tar header block: numbers, checksums, names and PAX records.

Every function raises ValueError (or MalformedInput for PAX records) on bad input; the
reader turns those into one-line ``MalformedInput`` errors naming the offset.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable

from ..errors import MalformedInput
from .entry import ParsedInfo

MAX_SIZE = 2**63 - 1  # Go's int64: no extractor takes more
HEADER_ONLY = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))  # types that carry no data
FIELDS = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_OCTAL_ZONE = re.compile(rb"[0-7 \0]*")
# The numbers of a header as Go, GNU tar, bsdtar and Python write them: zero-filled octal,
# one terminator each; captures mode, uid, gid, size, mtime and checksum.
_CANONICAL = re.compile(
    rb"([0-7]{7})[ \0]([0-7]{7})[ \0]([0-7]{7})[ \0]([0-7]{11})[ \0]([0-7]{11})[ \0]([0-7]{6})\0 "
)
_DEVICES = re.compile(rb"(?:[0-7]{7}[ \0]|\0{8}){2}")
_MAGICS = frozenset((b"ustar\x0000", b"ustar  \0"))
_SIMPLE_TYPES = frozenset((b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"))
_LENGTH = re.compile(rb"[0-9]{1,20}")
_DIGITS = re.compile(r"[0-9]{1,19}")
_TIME = re.compile(r"(-?[0-9]{1,30})(?:\.([0-9]{0,30}))?")
_HIGH = bytes(range(128, 256))
_GNU_EXTRA_EMPTY = bytes(512 - 345)


def num(field: bytes) -> int:
    """Octal (NUL/space padded) or GNU base-256 number field; ValueError when invalid."""
    if field[0] & 0x80:
        bits = 8 * len(field) - 1
        value = int.from_bytes(field, "big") & ((1 << bits) - 1)
        return value - (1 << bits) if field[0] & 0x40 else value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text.isdigit():
        if text:
            raise ValueError("not an octal number")
        return 0
    return int(text, 8)


def numbers(block: bytes, fields: tuple[bytes, ...]) -> tuple[int, int, int, int, int, int]:
    """mode, uid, gid, size, mtime and checksum of a header; ValueError when one is bad."""
    found = _CANONICAL.fullmatch(block, 100, 156)
    if found is not None:
        mode, uid, gid, size, mtime, chksum = found.groups()
        return int(mode, 8), int(uid, 8), int(gid, 8), int(size, 8), int(mtime, 8), int(chksum, 8)
    mode, uid, gid, size, mtime, chksum = fields[1:7]
    if _OCTAL_ZONE.fullmatch(block, 100, 156):  # the common case: plain octal everywhere
        try:
            return (
                int(mode.split(b"\0", 1)[0] or b"0", 8),
                int(uid.split(b"\0", 1)[0] or b"0", 8),
                int(gid.split(b"\0", 1)[0] or b"0", 8),
                int(size.split(b"\0", 1)[0] or b"0", 8),
                int(mtime.split(b"\0", 1)[0] or b"0", 8),
                int(chksum.split(b"\0", 1)[0] or b"0", 8),
            )
        except ValueError:
            pass  # blanks or spaces inside a field: let num decide
    return num(mode), num(uid), num(gid), num(size), num(mtime), num(chksum)


def simple_header(block: bytes) -> re.Match[bytes] | None:
    """The canonical numbers of a simple member's header (groups: mode, uid, gid, size,
    mtime, checksum); None when the header needs the full parse.

    Simple: a USTAR or GNU header of a standard type with a name, numbers in the canonical
    octal form and a correct unsigned checksum, so every check of the full parse passes.
    Anything else (extended headers, old or signed checksums, base-256 numbers, V7) is None:
    the full parse decides, and names the error if there is one.
    """
    if block[156:157] not in _SIMPLE_TYPES or not block[0] or block[257:265] not in _MAGICS:
        return None
    found = _CANONICAL.fullmatch(block, 100, 156)
    if found is None or not _DEVICES.fullmatch(block, 329, 345):
        return None
    return found if checksum(block) == int(found[6], 8) else None


def simple_span(block: bytes) -> int:
    """Bytes taken by a simple member (header, data, padding; see :func:`simple_header`);
    0 when the header needs the full parse."""
    found = simple_header(block)
    if found is None:
        return 0
    size = 0 if block[156:157] in HEADER_ONLY else int(found[4], 8)
    return 512 + size + (-size % 512)


def gnu_plain(block: bytes) -> bool:
    """A GNU header with nothing in its extra fields (access and change times, sparse map)."""
    return block[345:] == _GNU_EXTRA_EMPTY


def checksum(block: bytes, _adler: Callable[[bytes], int] = zlib.adler32) -> int:
    """The unsigned header checksum (sum of the bytes, the checksum field counted as spaces).

    Computed with zlib.adler32, whose low half is one plus the byte sum modulo 65521: exact
    for pieces of at most 256 bytes (the sum of one is at most 65280). The three pieces
    leave the checksum field out; it counts as eight spaces (256).
    """
    return (
        (_adler(block[:148]) & 0xFFFF)
        + (_adler(block[156:400]) & 0xFFFF)
        + (_adler(block[400:512]) & 0xFFFF)
        + 253
    )


def signed_checksum(block: bytes) -> int:
    """The checksum some old tars wrote, summing the bytes as signed chars."""
    rest = block[:148] + block[156:]
    return sum(rest) + 256 - 256 * (len(rest) - len(rest.translate(None, _HIGH)))


def text(field: bytes) -> str:
    """A NUL-terminated string field (undecodable bytes kept as surrogates)."""
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def header_name(fields: tuple[bytes, ...]) -> str:
    """The member name of unpacked ``fields`` (with the USTAR prefix)."""
    if fields[9] == b"ustar\x0000" and fields[14][0]:
        return text(fields[14]) + "/" + text(fields[0])
    return text(fields[0])


def header_info(fields: tuple[bytes, ...]) -> ParsedInfo:
    """A ParsedInfo with the name, link, owner names and device numbers of unpacked ``fields``.

    The numbers (mode, ids, size, mtime) are the caller's; ValueError for a bad device number.
    """
    info = ParsedInfo(header_name(fields))
    if fields[8][0]:
        info.linkname = text(fields[8])
    if fields[9][:5] == b"ustar":
        info.uname, info.gname = text(fields[10]), text(fields[11])
        if fields[12][0] or fields[13][0]:
            info.devmajor, info.devminor = num(fields[12]), num(fields[13])
    return info


def parse_pax(data: bytes, where: str) -> list[tuple[str, str]]:
    """Records of a PAX extended header, in order (``"%d %s=%s\\n"``; NUL padding allowed)."""
    records = []
    pos, end = 0, len(data)
    while pos < end:
        if not data[pos:].strip(b"\0"):
            break
        space = data.find(b" ", pos, pos + 21)
        length = data[pos:space] if space > 0 else b""
        stop = pos + int(length) if _LENGTH.fullmatch(length) else -1
        eq = data.find(b"=", space + 1, stop)
        if stop > end or eq <= space + 1 or data[stop - 1] != 0x0A:
            raise MalformedInput(f"bad PAX record at byte {pos} of the extended header {where}")
        key = data[space + 1 : eq].decode("utf-8", "surrogateescape")
        records.append((key, data[eq + 1 : stop - 1].decode("utf-8", "surrogateescape")))
        pos = stop
    return records


def pax_time(value: str) -> int | float:
    """A PAX time value: int when it has no fraction, float otherwise; ValueError if bad."""
    match = _TIME.fullmatch(value)
    if match is None:
        raise ValueError(f"bad PAX time {value[:40]!r}")
    return float(value) if (match[2] or "").strip("0") else int(match[1])


def pax_int(value: str) -> int:
    """A non-negative PAX number that fits an int64; ValueError if bad."""
    if not _DIGITS.fullmatch(value) or int(value) > MAX_SIZE:
        raise ValueError(f"bad PAX number {value[:40]!r}")
    return int(value)
