"""One-pass tar reader: 512-byte headers parsed by hand, bodies streamed, no seeking.

``iter_entries(stream)`` yields a :class:`TarEntry` per member. Supported: V7, USTAR, GNU
(``L``/``K`` long names, base-256 numbers) and PAX (``x`` records merged into the next member
and kept in ``info.pax_headers``; a ``g`` global header is yielded as an entry of type ``g``
whose body is its records, and its ``uid gid uname gname mtime`` records apply to later
members; a global ``path``, ``linkpath`` or ``size`` is refused). Sparse members (GNU ``S``,
PAX ``GNU.sparse.*`` 0.0/0.1/1.0) come out as regular files with the holes filled with zeros
(``raw_header`` None). Header-only types ``1``-``6`` never carry data, as in Go's archive/tar;
a non-zero size there is set to 0 (and the header re-encoded). The end is the first zero
block; whatever follows it is read and discarded so a caller hashing the stream sees every
byte. Padding bytes are not kept. Bad input raises a one-line ``MalformedInput``.
"""

from __future__ import annotations

import logging
import re
import struct
import tarfile
import zlib
from collections.abc import Callable
from typing import NoReturn, Protocol

from ..errors import LimitExceeded, MalformedInput
from .entry import TarEntry

log = logging.getLogger(__name__)

BLOCK = 512
CHUNK = 1 << 20
MAX_EXTENDED = 1 << 20  # one L/K/x/g data section (Go's limit too)
MAX_HEADERS = 4 << 20  # all header blocks of one member
MAX_SPARSE = 100_000  # sparse map entries of one member
MAX_SIZE = 2**63 - 1  # Go's int64: no extractor takes more
_MAX_READ = 64 << 20  # one stream.read() call
ZERO_BLOCK = bytes(BLOCK)
HEADER_ONLY = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))
_EXTENDED = frozenset((b"x", b"g", b"L", b"K"))
_GLOBAL_FIELDS = ("uid", "gid", "uname", "gname", "mtime")
_FIELDS = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_OCTAL_ZONE = re.compile(rb"[0-7 \0]*")
_LENGTH = re.compile(rb"[0-9]{1,20}")
_DIGITS = re.compile(r"[0-9]{1,19}")
_TIME = re.compile(r"(-?[0-9]{1,30})(?:\.([0-9]{0,30}))?")


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def iter_entries(stream: Readable, *, what: str = "layer") -> TarReader:
    """Iterate over the members of the tar read from ``stream`` (only ``read(n)`` is used).

    ``what`` names the stream in error messages ("corrupt tar header at offset N in <what>").
    """
    return TarReader(stream, what=what)


class Source:
    """Buffered, counted, forward-only view of a stream: big reads, no seeks."""

    __slots__ = ("_base", "_buf", "_pos", "_stream")

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._buf = b""
        self._pos = 0
        self._base = 0  # stream offset of _buf[0]

    def tell(self) -> int:
        return self._base + self._pos

    def read(self, n: int) -> bytes:
        """``n`` bytes, fewer only at the end of the stream."""
        pos, buf = self._pos, self._buf
        if pos + n <= len(buf):
            self._pos = pos + n
            return buf[pos : pos + n]
        parts = [buf[pos:]] if pos < len(buf) else []
        need = pos + n - len(buf)
        self._base += len(buf)
        self._buf, self._pos = b"", 0
        if need >= CHUNK:  # big body read: straight from the stream, no buffering
            while need > 0 and (data := self._stream.read(min(need, _MAX_READ))):
                parts.append(data)
                need -= len(data)
                self._base += len(data)
        else:
            filled: list[bytes] = []
            got = 0
            while got < need and (data := self._stream.read(CHUNK)):
                filled.append(data)
                got += len(data)
            buf = filled[0] if len(filled) == 1 else b"".join(filled)
            parts.append(buf[:need])
            self._buf, self._pos = buf, min(need, len(buf))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def skip(self, n: int) -> int:
        """Discard up to ``n`` bytes (read, never seek); return how many there were."""
        avail = len(self._buf) - self._pos
        if n <= avail:
            self._pos += n
            return n
        self._base += len(self._buf)
        self._buf, self._pos = b"", 0
        done = avail
        while done < n and (data := self._stream.read(min(n - done, CHUNK))):
            done += len(data)
            self._base += len(data)
        return done


class _BodyBase:
    __slots__ = ("remaining",)
    remaining: int

    def read(self, n: int = -1, /) -> bytes:
        raise NotImplementedError

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def abandon(self) -> int:
        """Stop reading; return how many archive bytes of this body were left unread."""
        left, self.remaining = self.remaining, 0
        return left


class Body(_BodyBase):
    """The data of one member: ``remaining`` more bytes taken from the archive stream."""

    __slots__ = ("_src", "_truncated")

    def __init__(self, src: Source, size: int, truncated: Callable[[], MalformedInput]) -> None:
        self._src = src
        self._truncated = truncated
        self.remaining = size

    def read(self, n: int = -1, /) -> bytes:
        """Exactly ``min(n, remaining)`` bytes (all that remain when ``n`` < 0)."""
        left = self.remaining
        if n < 0 or n > left:
            n = left
        if n == 0:
            return b""
        data = self._src.read(n)
        self.remaining = left - len(data)
        if len(data) < n:
            raise self._truncated()
        return data


class BytesBody(_BodyBase):
    """A body held in memory (synthesized small data, global header records)."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self.remaining = len(data)

    def read(self, n: int = -1, /) -> bytes:
        if n < 0 or n > self.remaining:
            n = self.remaining
        pos = self._pos
        self._pos, self.remaining = pos + n, self.remaining - n
        return self._data[pos : pos + n]

    def abandon(self) -> int:
        self.remaining = 0
        return 0


class SparseBody(_BodyBase):
    """A sparse member expanded: stored regions at their offsets, zeros in the holes."""

    __slots__ = ("_body", "_map", "_pos")

    def __init__(self, body: Body, sparse_map: list[tuple[int, int]], real_size: int) -> None:
        self._body = body
        self._map = sparse_map[::-1]  # popped from the end as regions are passed
        self._pos = 0
        self.remaining = real_size

    def read(self, n: int = -1, /) -> bytes:
        if n < 0 or n > self.remaining:
            n = self.remaining
        parts = []
        self.remaining -= n
        while n > 0:
            pos = self._pos
            offset, length = self._map[-1] if self._map else (pos + n, 0)
            if pos < offset:
                take = min(n, offset - pos)
                parts.append(bytes(take))
            elif pos < offset + length:
                take = min(n, offset + length - pos)
                parts.append(self._body.read(take))
            else:
                self._map.pop()
                continue
            self._pos = pos + take
            n -= take
        return b"".join(parts)

    def abandon(self) -> int:
        self.remaining = 0
        return self._body.abandon()


def _num(field: bytes) -> int:
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


def _numbers(block: bytes, fields: tuple[bytes, ...]) -> tuple[int, int, int, int, int, int]:
    """mode, uid, gid, size, mtime and checksum of a header; ValueError when one is bad."""
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
            pass  # blanks or spaces inside a field: let _num decide
    return _num(mode), _num(uid), _num(gid), _num(size), _num(mtime), _num(chksum)


def checksum(block: bytes) -> int:
    """The unsigned header checksum (sum of the bytes, the checksum field counted as spaces).

    Computed with zlib.adler32, three times faster than ``sum()``: adler32 gives the sum
    modulo 65521, and the exact sum of the halved bytes (at most 65024) pins it down.
    """
    halves = (zlib.adler32(block.translate(_HALF)) & 0xFFFF) - 1
    total = 2 * halves + ((zlib.adler32(block) & 0xFFFF) - 1 - 2 * halves) % 65521
    return total - sum(block[148:156]) + 256


def _signed_checksum(block: bytes) -> int:
    """The checksum some old tars wrote, summing the bytes as signed chars."""
    rest = block[:148] + block[156:]
    return sum(rest) + 256 - 256 * (len(rest) - len(rest.translate(None, _HIGH)))


_HIGH = bytes(range(128, 256))
_HALF = bytes(b >> 1 for b in range(256))


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


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


def _pax_int(value: str) -> int:
    if not _DIGITS.fullmatch(value) or int(value) > MAX_SIZE:
        raise ValueError(f"bad PAX number {value[:40]!r}")
    return int(value)


class TarReader:
    """Iterator over tar members; ``entry_offset`` is where the current one starts.

    When iteration ends, ``end_offset`` is where the end-of-archive marker began (None
    if the stream just stopped at a member boundary), ``total_size`` how many bytes were
    read from the stream in all and ``global_headers`` the PAX global records in force.
    """

    def __init__(self, stream: Readable, *, what: str = "layer") -> None:
        self.what = what
        self._src = Source(stream)
        self._body: _BodyBase | None = None
        self._pad = 0
        self._done = False
        self._name = ""
        self.entry_offset = 0
        self.end_offset: int | None = None
        self.total_size: int | None = None
        self.global_headers: dict[str, str] = {}

    @property
    def offset(self) -> int:
        """Bytes consumed from the stream so far."""
        return self._src.tell()

    def __iter__(self) -> TarReader:
        return self

    def truncated(self) -> MalformedInput:
        where = f"member {self._name!r} at offset {self.entry_offset}"
        return MalformedInput(f"truncated tar in {self.what}: {where} ends early")

    def _corrupt(self, offset: int, why: str = "") -> MalformedInput:
        detail = f": {why}" if why else ""
        return MalformedInput(f"corrupt tar header at offset {offset} in {self.what}{detail}")

    def __next__(self) -> TarEntry:
        if self._done:
            raise StopIteration
        src = self._src
        if self._body is not None:
            left = self._body.abandon() + self._pad
            self._body = None
            if src.skip(left) != left:
                raise self.truncated()
        self.entry_offset = src.tell()
        self._name = ""
        raw: list[bytes] = []
        pax: dict[str, str] = {}
        pairs: list[str] = []  # PAX sparse 0.0 offset/numbytes records, in order
        long_name = long_link = None
        while True:
            offset = src.tell()
            block = src.read(BLOCK)
            if len(block) < BLOCK:
                if raw or block:
                    raise self.truncated() if raw else self._corrupt(offset, "partial block")
                self._finish(None)
            if block == ZERO_BLOCK:
                if raw:
                    raise self._corrupt(offset, "extended header without a member")
                self._finish(offset)
            fields = _FIELDS.unpack(block)
            try:
                mode, uid, gid, size, mtime, stored = _numbers(block, fields)
            except ValueError:
                raise self._corrupt(offset, "bad number field") from None
            if stored != checksum(block) and stored != _signed_checksum(block):
                raise self._corrupt(offset)
            if not 0 <= size <= MAX_SIZE or not 0 <= mode <= 0o7777777 or uid < 0 or gid < 0:
                raise self._corrupt(offset, "negative or oversized number")
            kind = fields[7]
            if kind not in _EXTENDED:
                break
            padded = size + (-size % BLOCK)
            if size > MAX_EXTENDED or sum(map(len, raw)) + padded > MAX_HEADERS:
                raise LimitExceeded(
                    f"tar extended header of {size} bytes at offset {offset} in {self.what}"
                )
            chunk = src.read(padded)
            if len(chunk) < padded:
                raise self.truncated()
            data = chunk[:size]
            if kind == b"g":
                if raw:
                    raise self._corrupt(offset, "extended header before a global header")
                return self._global(block, data, offset)
            raw += (block, chunk)
            where = f"at offset {offset} in {self.what}"
            if kind == b"x":
                for key, value in parse_pax(data, where):
                    if key in ("GNU.sparse.offset", "GNU.sparse.numbytes"):
                        pairs.append(value)
                    pax[key] = value
            else:
                name, nul, rest = data.partition(b"\0")
                if rest.strip(b"\0"):
                    raise MalformedInput(f"tar member name with NUL {where}")
                text = name.decode("utf-8", "surrogateescape")
                long_name, long_link = (text, long_link) if kind == b"L" else (long_name, text)
        raw.append(block)
        info = tarfile.TarInfo(_text(fields[0]))
        if fields[9] == b"ustar\x0000" and fields[14][0]:
            info.name = _text(fields[14]) + "/" + info.name
        info.mode, info.uid, info.gid, info.mtime, info.chksum = mode, uid, gid, mtime, stored
        if fields[8][0]:
            info.linkname = _text(fields[8])
        if fields[9][:5] == b"ustar":
            info.uname, info.gname = _text(fields[10]), _text(fields[11])
            try:
                if fields[12][0] or fields[13][0]:
                    info.devmajor, info.devminor = _num(fields[12]), _num(fields[13])
            except ValueError:
                raise self._corrupt(offset, "bad device number") from None
        if kind == tarfile.AREGTYPE and info.name.endswith("/"):
            kind = tarfile.DIRTYPE
        info.type = kind
        return self._member(info, size, raw, pax, pairs, long_name, long_link, block)

    def _member(
        self,
        info: tarfile.TarInfo,
        size: int,
        raw: list[bytes],
        pax: dict[str, str],
        pairs: list[str],
        long_name: str | None,
        long_link: str | None,
        block: bytes,
    ) -> TarEntry:
        src = self._src
        where = f"at offset {self.entry_offset} in {self.what}"
        if long_name is not None:
            info.name = long_name
        if long_link is not None:
            info.linkname = long_link
        effective = pax
        if self.global_headers:
            effective = {k: v for k, v in self.global_headers.items() if k in _GLOBAL_FIELDS}
            effective.update(pax)
        real_size = None
        if effective:
            try:
                size, real_size = self._apply_pax(info, effective, size)
            except ValueError as exc:
                raise MalformedInput(f"bad PAX header {where}: {exc}") from None
        self._name = info.name
        if not info.name:
            raise MalformedInput(f"tar member with an empty name {where}")
        if "\0" in info.name or "\0" in info.linkname:
            raise MalformedInput(f"tar member name with NUL {where}")
        info.pax_headers = pax
        info.offset = self.entry_offset
        header: bytes | None = b"".join(raw)
        if info.type in HEADER_ONLY:
            if size:
                log.debug("ignored size %d of header-only tar member %s", size, where)
                header = None
            size = 0
        self._pad = -size % BLOCK
        self._body = body = Body(src, size, self.truncated)
        sparse_map = None
        if info.type == tarfile.GNUTYPE_SPARSE:
            sparse_map, real_size = self._old_gnu_map(block, raw)
        elif real_size is not None:
            sparse_map = self._pax_map(pax, pairs, body)
        info.offset_data = src.tell()
        if sparse_map is None:
            info.size = size
            return TarEntry(info, header, body)
        stored = body.remaining
        if real_size is None or sum(n for _, n in sparse_map) != stored:
            raise MalformedInput(f"bad sparse map in tar member {where}")
        end = 0
        for offset, length in sparse_map:
            if offset < end or offset + length > real_size:
                raise MalformedInput(f"bad sparse map in tar member {where}")
            end = offset + length
        info.type, info.size = tarfile.REGTYPE, real_size
        for key in [k for k in pax if k.startswith("GNU.sparse.") or k == "size"]:
            del pax[key]
        if "path" in pax:
            pax["path"] = info.name
        self._body = sparse = SparseBody(body, sparse_map, real_size)
        return TarEntry(info, None, sparse)

    def _apply_pax(
        self, info: tarfile.TarInfo, records: dict[str, str], size: int
    ) -> tuple[int, int | None]:
        """Apply header-field records; return the data size and the sparse real size."""
        real_size = None
        for key, value in records.items():
            if not value:
                continue  # an empty record leaves the header field in force
            if key == "path":
                info.name = value
            elif key == "linkpath":
                info.linkname = value
            elif key == "size":
                size = _pax_int(value)
            elif key == "uid":
                info.uid = _pax_int(value)
            elif key == "gid":
                info.gid = _pax_int(value)
            elif key == "uname":
                info.uname = value
            elif key == "gname":
                info.gname = value
            elif key == "mtime":
                info.mtime = pax_time(value)
            elif key in ("GNU.sparse.realsize", "GNU.sparse.size"):
                real_size = _pax_int(value)
        sparse_name = records.get("GNU.sparse.name")
        if sparse_name:
            info.name = sparse_name
        return size, real_size

    def _old_gnu_map(self, block: bytes, raw: list[bytes]) -> tuple[list[tuple[int, int]], int]:
        """Sparse map of an old GNU ``S`` header and its extension blocks (part of the header)."""
        sparse_map: list[tuple[int, int]] = []
        try:
            real_size = _num(block[483:495])
            area, count, extended = block[386:482], 4, block[482]
            while True:
                for i in range(0, 24 * count, 24):
                    if area[i] == 0:
                        break
                    sparse_map.append((_num(area[i : i + 12]), _num(area[i + 12 : i + 24])))
                if not extended or len(sparse_map) > MAX_SPARSE:
                    break
                area = self._src.read(BLOCK)
                if len(area) < BLOCK:
                    raise self.truncated()
                count, extended = 21, area[504]
        except ValueError:
            raise self._corrupt(self.entry_offset, "bad sparse map") from None
        if len(sparse_map) > MAX_SPARSE:
            raise LimitExceeded(f"sparse map over {MAX_SPARSE} entries in {self.what}")
        return sparse_map, real_size

    def _pax_map(self, pax: dict[str, str], pairs: list[str], body: Body) -> list[tuple[int, int]]:
        """Sparse map of a PAX sparse member (0.1 record, 0.0 records or 1.0 data prefix)."""
        try:
            if pax.get("GNU.sparse.major") == "1" and pax.get("GNU.sparse.minor") == "0":
                numbers: list[int] = []
                pending = b""
                count = None
                while count is None or len(numbers) < 2 * count:
                    line, newline, rest = pending.partition(b"\n")
                    if newline:
                        pending = rest
                        if count is None:
                            count = _pax_int(line.decode("ascii"))
                            if count > MAX_SPARSE:
                                raise LimitExceeded(f"sparse map over {MAX_SPARSE} entries")
                        else:
                            numbers.append(_pax_int(line.decode("ascii")))
                    elif len(pending) > 64 or body.remaining < BLOCK:
                        raise ValueError("bad sparse map")
                    else:
                        pending += body.read(BLOCK)
            elif "GNU.sparse.map" in pax:
                numbers = [_pax_int(n) for n in pax["GNU.sparse.map"].split(",")]
            else:
                numbers = [_pax_int(n) for n in pairs]
        except (ValueError, UnicodeDecodeError):
            raise MalformedInput(f"bad sparse map in tar member in {self.what}") from None
        if len(numbers) % 2 or len(numbers) > 2 * MAX_SPARSE:
            raise MalformedInput(f"bad sparse map in tar member in {self.what}")
        return list(zip(numbers[::2], numbers[1::2], strict=True))

    def _global(self, block: bytes, data: bytes, offset: int) -> TarEntry:
        """A ``g`` header: remember its records and hand it on as an entry of its own."""
        where = f"at offset {offset} in {self.what}"
        records = parse_pax(data, where)
        for key, value in records:
            if key in ("path", "linkpath", "size"):
                raise MalformedInput(f"PAX global header sets {key} {where}")
            try:
                if value and key in ("uid", "gid"):
                    _pax_int(value)
                elif value and key == "mtime":
                    pax_time(value)
            except ValueError as exc:
                raise MalformedInput(f"bad PAX global header {where}: {exc}") from None
            if value:
                self.global_headers[key] = value
            else:
                self.global_headers.pop(key, None)
        info = tarfile.TarInfo(_text(block[:100]) or "pax_global_header")
        info.type, info.size, info.offset = tarfile.XGLTYPE, len(data), offset
        info.pax_headers = dict(records)
        return TarEntry(info, block, BytesBody(data))

    def _finish(self, offset: int | None) -> NoReturn:
        """Read the rest of the stream (zero padding or junk after the end) and stop."""
        self._done = True
        self.end_offset = offset
        junk = False
        while data := self._src.read(CHUNK):
            junk = junk or data.count(0) != len(data)
        self.total_size = self._src.tell()
        if junk and offset is not None:
            log.warning("ignored non-zero data after the end of the tar in %s", self.what)
        raise StopIteration
