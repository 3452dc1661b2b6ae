"""Encoding tar headers: USTAR when every field fits exactly, else a PAX ``x`` header too.

``encode_header(info)`` carries only the records that must be there: fields that do not
fit, plus every record of ``info.pax_headers`` that is not a header field
(``SCHILY.xattr.*``, ACLs, ``atime``...). Records mirroring header fields
(``path linkpath size uid gid uname gname mtime``) and the encoding records
``hdrcharset``/``GNU.sparse.*`` are recomputed, never copied; the fields of ``info`` are
the truth. ``pax_block`` builds an ``x`` or ``g`` header from records. GNU format is never
written, except that a header changed only in its mtime is its source block patched: when
``info`` is a :class:`~occystrap.tario.entry.ParsedInfo` that still says what its source
block says (all fields but the times; no PAX record left), the result is that block with
the new mtime and checksum written in, as the member was (USTAR or plain GNU), without its
time-only extended header. The same entry gives the same bytes either way it is changed.
"""

from __future__ import annotations

import math
import struct
import tarfile
from collections.abc import Iterable, Mapping

from .entry import SourceHeader, header_fields, source_of
from .fields import HEADER_ONLY, checksum, pax_time
from .source import BLOCK

_HEADER = struct.Struct("100s56sc100s88s155s12x")  # name, mode..chksum, type, link, magic..
_ZERO7 = b"0000000\0"
_ZERO11 = b"00000000000\0"
PAD = [bytes(n) for n in range(BLOCK)]
_MAX7 = 0o7777777
_MAX11 = 0o77777777777
_MTIME_FIELDS: dict[int, tuple[bytes, int]] = {}  # mtime -> (its field, the sum of its bytes)
_MIRRORED = frozenset(("path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime"))


def _field(text: str, limit: int) -> bytes | None:
    """ASCII ``text`` as a header string field, or None when it does not fit."""
    data = text.encode("utf-8", "surrogateescape")
    return data if len(data) <= limit and data.isascii() else None


def _split_name(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) for a USTAR header, longest prefix first as GNU tar and Go do."""
    if len(name) <= 100:
        return b"", name
    cut = name.rfind(b"/", 0, min(len(name) - 1, 156))
    if cut <= 0 or cut > 155 or len(name) - cut - 1 > 100:
        return None
    return name[:cut], name[cut + 1 :]


def _record(key: str, value: str) -> bytes:
    """One PAX record ``"%d %s=%s\\n"`` (the length counts its own digits)."""
    body = (
        b" "
        + key.encode("utf-8", "surrogateescape")
        + b"="
        + value.encode("utf-8", "surrogateescape")
        + b"\n"
    )
    size = len(body) + 1
    while len(str(size)) + len(body) != size:
        size = len(str(size)) + len(body)
    return b"%d" % size + body


def _time_text(info: tarfile.TarInfo) -> str:
    """``info.mtime`` for a PAX record; the archive's own text when it still says the same."""
    mtime = info.mtime
    original = info.pax_headers.get("mtime")
    if original:
        try:
            if pax_time(original) == mtime:
                return original
        except ValueError:
            pass
    if isinstance(mtime, float):
        if mtime != mtime or mtime in (float("inf"), float("-inf")):
            raise ValueError(f"mtime of {info.name!r} is not a number")
        text = repr(mtime)
        return text if "e" not in text else f"{mtime:.9f}".rstrip("0").rstrip(".")
    return str(int(mtime))


def _block(
    name: bytes, numbers: bytes, kind: bytes, link: bytes, owners: bytes, prefix: bytes
) -> bytes:
    """One USTAR header block; ``numbers`` is mode..mtime, ``owners`` uname..devminor."""
    header = _HEADER.pack(name, numbers, kind, link, owners, prefix)
    return header[:148] + b"%06o\0 " % checksum(header) + header[156:]


def _ids(info: tarfile.TarInfo, records: dict[str, str]) -> tuple[int, int, int]:
    """Size, uid and gid for the USTAR fields, putting those that do not fit in records."""
    size = 0 if info.type in HEADER_ONLY else info.size
    uid, gid = info.uid, info.gid
    if min(size, uid, gid) < 0:
        raise ValueError(f"negative size, uid or gid for tar member {info.name!r}")
    if size > _MAX11:
        records["size"], size = str(size), 0
    if uid > _MAX7:
        records["uid"], uid = str(uid), 0
    if gid > _MAX7:
        records["gid"], gid = str(gid), 0
    return size, uid, gid


def encode_header(info: tarfile.TarInfo, *, force: Iterable[str] = ()) -> bytes:
    """Header block(s) for ``info``: one USTAR block, or a PAX ``x`` header and a USTAR block.

    ``force`` names header-field records to write as PAX records even when they fit (used
    to override PAX global headers in force). Raises ValueError for values no tar can hold.
    """
    source = source_of(info)
    if source is not None and not force and not info.pax_headers:
        patched = _patched(info, source)
        if patched is not None:
            return patched
    kind, name, mode = info.type, info.name, info.mode
    if len(kind) != 1 or not 0 <= mode <= _MAX7:
        raise ValueError(f"bad type or mode for tar member {info.name!r}")
    records: dict[str, str] = {}
    raw_name = name.encode("utf-8", "surrogateescape")
    split = _split_name(raw_name) if raw_name.isascii() else None
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        # "dir/" by convention, but the type says it all when the slash does not fit
        with_slash = _split_name(raw_name + b"/") if raw_name.isascii() else None
        split = with_slash or split
        name, raw_name = name + "/", raw_name + b"/"
    if split is None:
        records["path"] = name
        split = b"", raw_name.decode("ascii", "replace").encode("ascii", "replace")[:100]
    link = _field(info.linkname, 100)
    if link is None:
        records["linkpath"], link = info.linkname, b""
    size, uid, gid = _ids(info, records)
    uname, gname = _field(info.uname, 32), _field(info.gname, 32)
    if uname is None:
        records["uname"], uname = info.uname, b""
    if gname is None:
        records["gname"], gname = info.gname, b""
    mtime = info.mtime
    if isinstance(mtime, float) and not math.isfinite(mtime):
        raise ValueError(f"mtime of tar member {info.name!r} is not a number")
    whole = int(mtime)
    if whole != mtime or not 0 <= whole <= _MAX11:
        records["mtime"] = _time_text(info)
        whole = whole if 0 <= whole <= _MAX11 else 0
    for key in force:  # uid gid uname gname mtime set by a global header in force
        if key not in records:
            records[key] = _time_text(info) if key == "mtime" else str(getattr(info, key))
    for key, value in info.pax_headers.items():
        if key not in _MIRRORED and key != "hdrcharset" and not key.startswith("GNU.sparse."):
            records[key] = value
    major, minor = info.devmajor, info.devminor
    if not (0 <= major <= _MAX7 and 0 <= minor <= _MAX7):
        raise ValueError(f"device number of tar member {info.name!r} out of range")
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0        " % (mode, uid, gid, size, whole)
    owners = b"ustar\x0000%s%s%07o\0%07o\0" % (
        uname.ljust(32, b"\0"),
        gname.ljust(32, b"\0"),
        major,
        minor,
    )
    header = _block(split[1], numbers, kind, link, owners, split[0])
    if not records:
        return header
    return pax_block(records, tarfile.XHDTYPE) + header


def _patched(info: tarfile.TarInfo, source: SourceHeader) -> bytes | None:
    """``source``'s block with ``info.mtime`` written in, if that is all that changed."""
    mtime = info.mtime
    if type(mtime) is not int:
        mtime = int(mtime) if isinstance(mtime, float) and mtime.is_integer() else -1
    if not 0 <= mtime <= _MAX11 or header_fields(info) != source.fields:
        return None
    field = _MTIME_FIELDS.get(mtime)
    if field is None:
        if len(_MTIME_FIELDS) >= 256:
            _MTIME_FIELDS.clear()
        text = b"%011o\0" % mtime
        field = _MTIME_FIELDS[mtime] = (text, sum(text))
    block = source.block
    total = source.checksum - sum(block[136:148]) + field[1]
    return b"".join((block[:136], field[0], b"%06o\0 " % total, block[156:]))


def pax_block(records: Mapping[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A PAX extended (``x``) or global (``g``) header with its records, padded."""
    data = b"".join(_record(k, v) for k, v in records.items())
    for key in ("path", "linkpath", "uname", "gname"):
        value = records.get(key)
        if value is not None and not _encodes(value):
            data = _record("hdrcharset", "BINARY") + data
            break
    name = b"././@PaxHeader" if kind == tarfile.XHDTYPE else b"pax_global_header"
    numbers = b"0000644\0%s%s%011o\0%s        " % (_ZERO7, _ZERO7, len(data), _ZERO11)
    owners = b"ustar\x0000" + bytes(64) + _ZERO7 + _ZERO7
    return _block(name, numbers, kind, b"", owners, b"") + data + PAD[-len(data) % BLOCK]


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
