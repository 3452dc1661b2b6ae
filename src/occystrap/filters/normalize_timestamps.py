"""normalize-timestamps: one mtime for every entry and every config date, for reproducibility.

Only headers change: an entry whose mtime already equals the target and that carries no
atime/ctime/sub-second records passes through byte for byte (so the filter is idempotent
and an already-normalised layer keeps its digest). Other PAX records (xattrs such as
``security.capability``, ACLs, long names) are kept; the writer picks USTAR whenever the
re-encoded entry fits it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidOption
from ..model.config import ImageConfig, rfc3339
from ..tario.entry import TarEntry
from .base import LayerView, PassThrough
from .options import NormalizeOptions

_TIME_RECORDS = ("mtime", "atime", "ctime")


def _default_timestamp() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        raise InvalidOption(f"SOURCE_DATE_EPOCH must be an integer, not {value!r}") from None


class NormalizeTimestamps(PassThrough):
    name = "normalize-timestamps"
    rewrites_layers = True

    def __init__(self, options: NormalizeOptions) -> None:
        self.timestamp = options.ts if options.ts is not None else _default_timestamp()
        if not 0 <= self.timestamp < 8**11:
            raise InvalidOption(f"filter normalize-timestamps: ts={self.timestamp} is out of range")

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        ts = self.timestamp
        for entry in entries:
            info = entry.info
            if info.mtime == ts and not any(k in info.pax_headers for k in _TIME_RECORDS):
                yield entry
                continue
            new = copy.copy(info)
            new.mtime = ts
            new.pax_headers = {k: v for k, v in info.pax_headers.items() if k not in _TIME_RECORDS}
            entry.info = new
            entry.raw_header = None
            yield entry

    def edit_config(self, config: ImageConfig) -> ImageConfig:
        stamp = rfc3339(self.timestamp)

        def set_dates(obj: dict[str, Any]) -> None:
            if "created" in obj:
                obj["created"] = stamp
            for entry in obj.get("history") or []:
                if isinstance(entry, dict) and "created" in entry:
                    entry["created"] = stamp

        return config.edit(set_dates)
