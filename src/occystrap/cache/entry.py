"""One layer-cache entry: the metadata file ``entries/<key id>.json`` and its fields.

The file's modification time is the entry's last use (touched on every hit), which is what
least-recently-used eviction orders by. The blob it names lives at ``blobs/sha256/<hex>``;
several entries may share one blob. An entry without a blob is a *passthrough*: the filter
chain left that source layer unchanged, so the engine passes the source's own blob.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidReference
from ..model.digest import Digest
from .key import FORMAT, canonical


class BadEntry(Exception):
    """An entry file that cannot be used (unreadable, truncated, wrong format)."""


@dataclass(frozen=True)
class Entry:
    id: str
    key: dict[str, Any]
    #: the cached output blob (sha256), None for a passthrough entry
    blob: Digest | None
    size: int
    diff_id: Digest | None
    #: compression of the blob: 'gzip', 'zstd' or 'none'
    compression: str
    #: the output is the source's stored bytes (lets the engine keep the source manifest)
    unchanged: bool
    #: what the engine did when it produced the entry: rewritten, converted, copied, passthrough
    outcome: str
    created: float
    #: seconds since the epoch, from the file's mtime (not stored in the JSON)
    last_used: float = 0.0

    @property
    def passthrough(self) -> bool:
        return self.blob is None

    def to_bytes(self) -> bytes:
        return canonical(
            {
                "format": FORMAT,
                "key": self.key,
                "blob": str(self.blob) if self.blob else None,
                "size": self.size,
                "diff_id": str(self.diff_id) if self.diff_id else None,
                "compression": self.compression,
                "unchanged": self.unchanged,
                "outcome": self.outcome,
                "created": self.created,
            }
        )

    def describe(self) -> dict[str, Any]:
        """The entry as ``occystrap cache ls --json`` shows it."""
        key = self.key
        return {
            "id": self.id,
            "source": key.get("source"),
            "source_kind": key.get("source_kind"),
            "filters": [
                {"name": f.get("name"), "settings": f.get("settings")}
                for f in key.get("filters", [])
                if isinstance(f, dict)
            ],
            "form": key.get("form"),
            "compression": key.get("compression"),
            "level": key.get("level"),
            "blob": str(self.blob) if self.blob else None,
            "size": self.size,
            "diff_id": str(self.diff_id) if self.diff_id else None,
            "outcome": self.outcome,
            "created": self.created,
            "last_used": self.last_used,
        }


def read_entry(path: str, entry_id: str) -> Entry:
    """Parse ``path``; raise BadEntry for anything unusable (FileNotFoundError passes)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
            mtime = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        raise
    except OSError as e:
        raise BadEntry(f"cannot read {path}: {e.strerror}") from None
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise BadEntry(f"{path}: not a format {FORMAT} entry")
        blob = obj["blob"]
        diff_id = obj["diff_id"]
        size = obj["size"]
        if not isinstance(size, int) or size < 0 or not isinstance(obj["key"], dict):
            raise BadEntry(f"{path}: bad size or key")
        return Entry(
            id=entry_id,
            key=obj["key"],
            blob=Digest.parse(blob) if blob is not None else None,
            size=size,
            diff_id=Digest.parse(diff_id) if diff_id is not None else None,
            compression=str(obj["compression"]),
            unchanged=bool(obj["unchanged"]),
            outcome=str(obj["outcome"]),
            created=float(obj["created"]),
            last_used=mtime,
        )
    except (ValueError, KeyError, TypeError, InvalidReference) as e:
        raise BadEntry(f"{path}: {e}") from None
