"""normalize-timestamps: one mtime for every entry and every config date, for reproducibility.

Only headers change, bodies stream through untouched. Each entry gets ``mtime = ts``; the
PAX time records ``atime``, ``ctime`` and ``LIBARCHIVE.creationtime`` are dropped (as is a
sub-second ``mtime`` record); every other record (xattrs such as ``security.capability``,
ACLs, long names) is kept, and the writer re-encodes the header as USTAR whenever it fits;
a header that was one USTAR/GNU block (possibly after a PAX header of time records only) is
that block with the new mtime patched in, not re-encoded (see
:func:`occystrap.tario.encode.encode_header`), so its size and layout stay the source's.
An entry that already has ``mtime == ts`` and no time records passes through byte for byte,
so the filter is idempotent and an already normalised layer keeps its digest. A PAX global
header loses its time records too (and every later entry is re-encoded, since the global
value no longer applies to it). The config's ``created`` and ``history[].created`` become
``ts`` as well, and so does the manifest annotation ``org.opencontainers.image.created``
when the source has it. ``ts`` defaults to ``$SOURCE_DATE_EPOCH``, else 0.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidOption
from ..model.config import ImageConfig, rfc3339
from ..tario.entry import TIME_RECORDS as _TIME_RECORDS
from ..tario.entry import TarEntry
from ..tario.writer import copy_info
from .base import HeaderEdit, LayerView, PassThrough
from .options import NormalizeOptions

#: the manifest annotation holding the image's creation date (OCI image spec)
CREATED_ANNOTATION = "org.opencontainers.image.created"
#: PAX records that carry a time (``mtime`` mirrors the header field and is recomputed).
TIME_RECORDS = _TIME_RECORDS
_MAX_TS = 8**11 - 1  # the largest mtime a USTAR header holds


def default_timestamp() -> int:
    """``$SOURCE_DATE_EPOCH`` as an integer, 0 when it is unset or empty."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return 0
    try:
        return int(value, 10)
    except ValueError:
        raise InvalidOption(f"SOURCE_DATE_EPOCH must be an integer, not {value!r}") from None


class NormalizeTimestamps(PassThrough):
    name = "normalize-timestamps"
    rewrites_layers = True

    def __init__(self, options: NormalizeOptions) -> None:
        if options.ts is not None and options.timestamp is not None:
            raise InvalidOption("filter normalize-timestamps: give ts or timestamp, not both")
        chosen = options.ts if options.ts is not None else options.timestamp
        self.timestamp = chosen if chosen is not None else default_timestamp()
        if not 0 <= self.timestamp <= _MAX_TS:
            raise InvalidOption(
                f"filter normalize-timestamps: ts={self.timestamp} is out of range 0..{_MAX_TS}"
            )
        self.header_edit = HeaderEdit(mtime=self.timestamp)

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        ts = self.timestamp
        reencode_all = False
        for entry in entries:
            info = entry.info
            records = info.pax_headers
            timed = bool(records) and not TIME_RECORDS.isdisjoint(records)
            if info.type == tarfile.XGLTYPE:
                if timed:
                    reencode_all = True
                    new = copy_info(info)
                    new.pax_headers = {k: v for k, v in records.items() if k not in TIME_RECORDS}
                    entry = TarEntry(new, None, entry.body)
                yield entry
                continue
            if not reencode_all and info.mtime == ts and not timed:
                yield entry
                continue
            new = copy_info(info)
            new.mtime = ts
            if timed:
                new.pax_headers = {k: v for k, v in records.items() if k not in TIME_RECORDS}
            yield TarEntry(new, None, entry.body)

    def edit_config(self, config: ImageConfig) -> ImageConfig:
        stamp = rfc3339(self.timestamp)

        def set_dates(obj: dict[str, Any]) -> None:
            if "created" in obj:
                obj["created"] = stamp
            history = obj.get("history")
            if isinstance(history, list):
                for item in history:
                    if isinstance(item, dict) and "created" in item:
                        item["created"] = stamp

        return config.edit(set_dates)

    def edit_annotations(self, annotations: dict[str, str]) -> dict[str, str]:
        if CREATED_ANNOTATION not in annotations:
            return annotations
        return {**annotations, CREATED_ANNOTATION: rfc3339(self.timestamp)}
