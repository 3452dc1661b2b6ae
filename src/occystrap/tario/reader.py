"""One-pass tar reader: 512-byte headers parsed by hand, bodies streamed, no seeking.

``iter_entries(stream)`` yields a :class:`TarEntry` per member. Supported: V7, USTAR, GNU
(``L``/``K`` long names, base-256 numbers) and PAX (``x`` records merged into the next member
and kept in ``info.pax_headers``; a ``g`` global header is yielded as an entry of type ``g``
whose body is its records, and its ``uid gid uname gname mtime`` records apply to later
members; a global ``path``, ``linkpath`` or ``size`` is refused). Sparse members (GNU ``S``,
PAX ``GNU.sparse.*`` 0.0/0.1/1.0) come out as regular files with the holes filled with zeros
(``raw_header`` None; expansion capped, see :mod:`.sparse`). Header-only types ``1``-``6`` never carry data, as in Go's archive/tar;
a non-zero size there is set to 0 (and the header re-encoded). The end is the first zero
block; whatever follows it is read and discarded so a caller hashing the stream sees every
byte. Padding bytes are not kept. Bad input raises a one-line ``MalformedInput``.
"""

from __future__ import annotations

import logging
import tarfile
from typing import NoReturn

from ..errors import LimitExceeded, MalformedInput
from . import simple
from .entry import TIME_RECORDS, MemberRun, ParsedInfo, SourceHeader, TarEntry, header_fields
from .fields import (
    FIELDS,
    gnu_plain,
    header_info,
    header_name,
    num,
    numbers,
    pax_int,
    signed_checksum,
    text,
)
from .fields import HEADER_ONLY as HEADER_ONLY
from .fields import MAX_SIZE as MAX_SIZE
from .fields import checksum as checksum
from .fields import parse_pax as parse_pax
from .fields import pax_time as pax_time
from .source import BLOCK as BLOCK
from .source import CHUNK as CHUNK
from .source import Body, BodyBase, Readable, Source
from .source import BytesBody as BytesBody
from .sparse import MAX_SPARSE as MAX_SPARSE
from .sparse import SparseBody, check_map, old_gnu_map, pax_map

log = logging.getLogger(__name__)

MAX_EXTENDED = 1 << 20  # one L/K/x/g data section (Go's limit too)
MAX_HEADERS = 4 << 20  # all header blocks of one member
ZERO_BLOCK = bytes(BLOCK)
_EXTENDED = frozenset((b"x", b"g", b"L", b"K"))
_GLOBAL_FIELDS = ("uid", "gid", "uname", "gname", "mtime")


def iter_entries(
    stream: Readable, *, what: str = "layer", max_sparse_size: int | None = None
) -> TarReader:
    """Iterate over the members of the tar read from ``stream`` (only ``read(n)`` is used).

    ``what`` names the stream in error messages ("corrupt tar header at offset N in <what>").
    ``max_sparse_size`` caps the expanded size of a sparse member (default: 64 times its
    stored data plus 1 GiB, see :mod:`occystrap.tario.sparse`); over it, LimitExceeded.
    """
    return TarReader(stream, what=what, max_sparse_size=max_sparse_size)


class TarReader:
    """Iterator over tar members; ``entry_offset`` is where the current one starts.

    When iteration ends, ``end_offset`` is where the end-of-archive marker began (None
    if the stream just stopped at a member boundary), ``total_size`` how many bytes were
    read from the stream in all and ``global_headers`` the PAX global records in force.
    """

    def __init__(
        self,
        stream: Readable,
        *,
        what: str = "layer",
        max_sparse_size: int | None = None,
        stepwise: bool = False,
    ) -> None:
        self.what = what
        self.max_sparse_size = max_sparse_size
        self._src = Source(stream)
        self._body: BodyBase | None = None
        self._stored: Body | None = None  # the current member's data as stored
        self._plain: tuple[bytes, ...] | None = None  # fields of a member walked by step()
        self._stepwise = stepwise
        self._tail = False  # reading what follows the end (stepwise)
        self._junk = False
        self._pad = 0
        self._done = False
        self._seen_global = False
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

    def step(self) -> bool:
        """Walk the archive a bounded amount at a time, bodies skipped (for checking only).

        Each call skips up to one chunk of the current member's data or of what follows
        the end, or parses the next member's headers; False once the stream is used up.
        Only for a reader made with ``stepwise=True``; bad input raises as iteration does.
        """
        if self._tail:
            return self._tail_step()
        stored = self._stored
        if stored is not None and stored.remaining > CHUNK:
            got = self._src.skip(CHUNK)
            stored.remaining -= got
            if got < CHUNK:
                raise self.truncated()
            return True
        if self._done:
            return False
        try:
            self._next(True)
        except StopIteration:
            return self._tail
        return True

    def truncated(self) -> MalformedInput:
        if self._plain is not None:  # a member walked by step(): its name is made now
            self._name = header_name(self._plain)
        where = f"member {self._name!r} at offset {self.entry_offset}"
        return MalformedInput(f"truncated tar in {self.what}: {where} ends early")

    def _where(self) -> str:
        return f"at offset {self.entry_offset} in {self.what}"

    def _corrupt(self, offset: int, why: str = "") -> MalformedInput:
        detail = f": {why}" if why else ""
        return MalformedInput(f"corrupt tar header at offset {offset} in {self.what}{detail}")

    def __next__(self) -> TarEntry:
        entry = self._next(False)
        assert entry is not None
        return entry

    def _next(self, walk: bool) -> TarEntry | None:
        """The next member; with ``walk``, a plain member is only checked (None)."""
        if self._done:
            raise StopIteration
        src = self._src
        self._settle()
        if walk and not self.global_headers:
            self._skim()
        self.entry_offset = src.tell()
        self._name = ""
        self._plain = None
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
            fields = FIELDS.unpack(block)
            try:
                mode, uid, gid, size, mtime, stored = numbers(block, fields)
            except ValueError:
                raise self._corrupt(offset, "bad number field") from None
            unsigned = stored == checksum(block)
            if not unsigned and stored != signed_checksum(block):
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
                    f" (limit {MAX_EXTENDED} per header, {MAX_HEADERS} per member)"
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
                found = name.decode("utf-8", "surrogateescape")
                long_name, long_link = (found, long_link) if kind == b"L" else (long_name, found)
        plain = not raw and kind != tarfile.GNUTYPE_SPARSE and not self.global_headers
        if plain and walk:
            self._walk_plain(fields, kind, size)
            return None
        raw.append(block)
        try:
            info = header_info(fields)
        except ValueError:
            raise self._corrupt(offset, "bad device number") from None
        info.mode, info.uid, info.gid, info.mtime, info.chksum = mode, uid, gid, mtime, stored
        if kind == tarfile.AREGTYPE and info.name.endswith("/"):
            kind = tarfile.DIRTYPE
        info.type = kind
        if plain:
            entry = self._plain_member(info, size, block)
        else:
            entry = self._member(info, size, raw, pax, pairs, long_name, long_link, block)
        if (
            unsigned
            and entry.raw_header is not None
            and kind == fields[7]
            and (fields[9] == b"ustar\x0000" or fields[9] == b"ustar  \0" and gnu_plain(block))
            and (plain or long_name is None is long_link and TIME_RECORDS.issuperset(pax))
            and not self.global_headers
        ):
            info.source = SourceHeader(block, header_fields(info), stored)
        return entry

    def _settle(self) -> None:
        """Skip what the current member's body and padding left unread."""
        if self._body is not None:
            left = self._body.abandon() + self._pad
            self._body = self._stored = None
            if self._src.skip(left) != left:
                raise self.truncated()

    def simple_run(self, mtime: int) -> MemberRun | None:
        """The simple members that lie whole in the source's buffer from here, consumed
        and given back as archive bytes with ``mtime`` set in each header; None when there
        are none, the archive ended or a PAX global header was seen.

        The bytes are what reading each member, setting its mtime and writing it back
        gives (a header already saying ``mtime`` is kept as it is, any other has the new
        field and checksum patched in, as :func:`~occystrap.tario.encode.encode_header`
        does), so a caller may take runs between entries of the same stream. Only members
        the full parse would accept and give a source block to are taken: one USTAR or
        plain GNU header, no size on a header-only type and zeros as padding (see
        :mod:`occystrap.tario.simple`).
        """
        if self._done or self._seen_global:
            return None
        self._settle()
        buf, start = self._src.window()
        run = simple.edited_run(buf, start, mtime)
        if run is not None:
            self._src.advance(run.size)
        return run

    def _plain_member(self, info: ParsedInfo, size: int, block: bytes) -> TarEntry:
        """:meth:`_member` for a member of one header block (its names hold no NUL)."""
        self._name = info.name
        if not info.name:
            raise MalformedInput(f"tar member with an empty name {self._where()}")
        info.offset = self.entry_offset
        header: bytes | None = block
        if info.type in HEADER_ONLY:
            if size:
                log.debug("ignored size %d of header-only tar member %s", size, self._where())
                header = None
            size = 0
        self._pad = -size % BLOCK
        self._body = self._stored = body = Body(self._src, size, self.truncated)
        info.offset_data = self.entry_offset + BLOCK
        info.size = size
        return TarEntry(info, header, body)

    def _skim(self) -> None:
        """Walk past the simple members that lie whole in the source's buffer (bounded by
        one chunk): the full parse would accept each of them and build nothing."""
        buf, start = self._src.window()
        self._src.advance(simple.skimmed(buf, start) - start)

    def _walk_plain(self, fields: tuple[bytes, ...], kind: bytes, size: int) -> None:
        """Check a member with no extended headers as :meth:`_member` would, without
        building its entry, and make its data the next thing to skip."""
        self._plain = fields
        if not fields[0][0] and not (fields[9] == b"ustar\x0000" and fields[14][0]):
            raise MalformedInput(f"tar member with an empty name {self._where()}")
        if fields[9][:5] == b"ustar" and (fields[12][0] or fields[13][0]):
            try:
                num(fields[12]), num(fields[13])
            except ValueError:
                raise self._corrupt(self.entry_offset, "bad device number") from None
        if kind in HEADER_ONLY or kind == tarfile.AREGTYPE and header_name(fields).endswith("/"):
            size = 0  # an old-style directory (as the full parse reads it)
        self._pad = -size % BLOCK
        self._body = self._stored = Body(self._src, size, self.truncated)

    def _member(
        self,
        info: ParsedInfo,
        size: int,
        raw: list[bytes],
        pax: dict[str, str],
        pairs: list[str],
        long_name: str | None,
        long_link: str | None,
        block: bytes,
    ) -> TarEntry:
        src = self._src
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
                raise MalformedInput(f"bad PAX header {self._where()}: {exc}") from None
        self._name = info.name
        if not info.name:
            raise MalformedInput(f"tar member with an empty name {self._where()}")
        if "\0" in info.name or "\0" in info.linkname:
            raise MalformedInput(f"tar member name with NUL {self._where()}")
        info.pax_headers = pax
        info.offset = self.entry_offset
        header: bytes | None = b"".join(raw)
        if info.type in HEADER_ONLY:
            if size:
                log.debug("ignored size %d of header-only tar member %s", size, self._where())
                header = None
            size = 0
        self._pad = -size % BLOCK
        self._body = self._stored = body = Body(src, size, self.truncated)
        sparse_map = None
        try:
            if info.type == tarfile.GNUTYPE_SPARSE:
                sparse_map, real_size = old_gnu_map(block, self._extension_block)
            elif real_size is not None:
                sparse_map = pax_map(pax, pairs, body)
            info.offset_data = src.tell()
            if sparse_map is None:
                info.size = size
                return TarEntry(info, header, body)
            limit = self.max_sparse_size
            real_size = check_map(sparse_map, real_size, body.remaining, limit)
        except (ValueError, UnicodeDecodeError):
            raise MalformedInput(f"bad sparse map in tar member {self._where()}") from None
        except LimitExceeded as exc:
            raise LimitExceeded(f"{exc} {self._where()}") from None
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
                size = pax_int(value)
            elif key == "uid":
                info.uid = pax_int(value)
            elif key == "gid":
                info.gid = pax_int(value)
            elif key == "uname":
                info.uname = value
            elif key == "gname":
                info.gname = value
            elif key == "mtime":
                info.mtime = pax_time(value)
            elif key in ("GNU.sparse.realsize", "GNU.sparse.size"):
                real_size = pax_int(value)
        sparse_name = records.get("GNU.sparse.name")
        if sparse_name:
            info.name = sparse_name
        return size, real_size

    def _extension_block(self) -> bytes:
        """The next header block of an old GNU sparse header (its map continues there)."""
        area = self._src.read(BLOCK)
        if len(area) < BLOCK:
            raise self.truncated()
        return area

    def _global(self, block: bytes, data: bytes, offset: int) -> TarEntry:
        """A ``g`` header: remember its records and hand it on as an entry of its own."""
        self._seen_global = True
        where = f"at offset {offset} in {self.what}"
        records = parse_pax(data, where)
        for key, value in records:
            if key in ("path", "linkpath", "size"):
                raise MalformedInput(f"PAX global header sets {key} {where}")
            try:
                if value and key in ("uid", "gid"):
                    pax_int(value)
                elif value and key == "mtime":
                    pax_time(value)
            except ValueError as exc:
                raise MalformedInput(f"bad PAX global header {where}: {exc}") from None
            if value:
                self.global_headers[key] = value
            else:
                self.global_headers.pop(key, None)
        info = tarfile.TarInfo(text(block[:100]) or "pax_global_header")
        info.type, info.size, info.offset = tarfile.XGLTYPE, len(data), offset
        info.pax_headers = dict(records)
        self._stored = None
        return TarEntry(info, block, BytesBody(data))

    def _finish(self, offset: int | None) -> NoReturn:
        """Read the rest of the stream (zero padding or junk after the end) and stop."""
        self._done = self._tail = True
        self._body = self._stored = None
        self.end_offset = offset
        if not self._stepwise:
            while self._tail_step():
                pass
        raise StopIteration

    def _tail_step(self) -> bool:
        """Read a chunk of what follows the end; at the end of the stream, wrap up."""
        if data := self._src.read(CHUNK):
            self._junk = self._junk or data.count(0) != len(data)
            return True
        self._tail = False
        self.total_size = self._src.tell()
        if self._junk and self.end_offset is not None:
            log.warning("ignored non-zero data after the end of the tar in %s", self.what)
        return False
