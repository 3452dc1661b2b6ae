"""Simple members handled as bytes, without an entry each: walked past (the check) or
edited in runs (header edits such as normalize-timestamps).

A simple member is one USTAR or GNU header block that every check of the full parse
passes (see :func:`~occystrap.tario.fields.simple_header`), then its data and padding.
Both functions look only at the bytes already buffered, from ``start``; whatever they stop
at (an extended header, a member not whole in the buffer, the end) is the full parse's.
"""

from __future__ import annotations

from .entry import MemberRun
from .fields import HEADER_ONLY, gnu_plain, simple_header, simple_span
from .source import BLOCK

_ZERO_SIZE = b"00000000000"


def skimmed(buf: bytes, start: int) -> int:
    """Where the simple members lying whole in ``buf`` from ``start`` end."""
    pos, end = start, len(buf) - BLOCK
    while pos <= end and (span := simple_span(buf[pos : pos + BLOCK])):
        if pos + span > len(buf):
            break
        pos += span
    return pos


def edited_run(buf: bytes, start: int, mtime: int) -> MemberRun | None:
    """The simple members lying whole in ``buf`` from ``start`` with ``mtime`` set in each
    header, as archive bytes; None when there are none.

    The bytes are what the full parse, setting the mtime and the writer give: a header
    already saying ``mtime`` is kept as it is, any other has the new field and checksum
    patched in (as :func:`~occystrap.tario.encode.encode_header` patches a source block).
    So members the full parse would treat otherwise are left to it: a GNU header with
    times or a sparse map in its extra fields, a header-only type with a size (re-encoded
    with none), padding that is not zeros (written as zeros).
    """
    field = b"%011o\0" % mtime
    digits, field_sum = field[:11], sum(field)
    view = memoryview(buf)
    pieces: list[bytes | memoryview] = []
    pos = since = start
    end = len(buf)
    count = changed = 0
    while pos + BLOCK <= end:
        block = buf[pos : pos + BLOCK]
        found = simple_header(block)
        if found is None:
            break
        if block[156:157] in HEADER_ONLY:
            if found[4] != _ZERO_SIZE:
                break
            span = BLOCK
        else:
            size = int(found[4], 8)
            span = BLOCK + size + (-size % BLOCK)
            data_end = pos + BLOCK + size
            if pos + span > end or buf.count(0, data_end, pos + span) != pos + span - data_end:
                break
        if block[257:265] != b"ustar\x0000" and not gnu_plain(block):
            break
        if block[136:147] != digits:
            if since < pos:
                pieces.append(view[since:pos])
            total = int(found[6], 8) - sum(block[136:148]) + field_sum
            pieces.append(b"".join((block[:136], field, b"%06o\0 " % total, block[156:])))
            since = pos + BLOCK
            changed += 1
        pos += span
        count += 1
    if not count:
        return None
    if since < pos:
        pieces.append(view[since:pos])
    return MemberRun(pieces, pos - start, count, changed)
