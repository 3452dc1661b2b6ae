"""What a layer-cache entry is keyed by, as canonical JSON and its sha256.

A cached layer is the engine's output for one source layer, so the key holds everything
that output depends on:

* the source layer: its stored digest, or its diff_id when the source has no descriptor;
* the filter chain that rewrote it: each filter's name, class and settings, in order;
* the form the sink wants ('stored' or 'uncompressed') and, for stored sinks, the
  compression and level (the level resolved to its default, so ``--compression-level 1``
  and no level share entries);
* :data:`FORMAT` and the occystrap version, so a change of encoder never mixes old and new
  outputs.

A filter's settings are its public attributes (``vars`` without ``_`` names), which must
be plain JSON values, dataclasses or tuples of them; a filter may instead define
``cache_identity() -> object`` returning JSON-able settings. A chain whose settings cannot
be written as JSON is not cached at all (:func:`chain_identity` returns None).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..blobio.compression import validate_level
from ..model.digest import Digest

#: Bumped whenever the meaning of an entry changes.
FORMAT = 1


class _NotJson(Exception):
    pass


def _plain(value: Any) -> Any:
    """``value`` as JSON-able data; raise _NotJson for anything else."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    raise _NotJson(type(value).__name__)


def filter_identity(f: object) -> dict[str, Any] | None:
    """``{"name", "class", "settings"}`` of one filter, or None when it cannot be keyed."""
    kind = type(f)
    custom = getattr(f, "cache_identity", None)
    try:
        if callable(custom):
            settings = _plain(custom())
        else:
            public = {k: v for k, v in vars(f).items() if not k.startswith("_")}
            settings = _plain(public)
    except (_NotJson, TypeError):
        return None
    return {
        "name": str(getattr(f, "name", kind.__name__)),
        "class": f"{kind.__module__}.{kind.__qualname__}",
        "settings": settings,
    }


def chain_identity(filters: Sequence[object]) -> list[dict[str, Any]] | None:
    """The identities of ``filters`` in order, or None when one of them cannot be keyed."""
    out = []
    for f in filters:
        ident = filter_identity(f)
        if ident is None:
            return None
        out.append(ident)
    return out


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class CacheKey:
    """The identity of one cached output layer (see the module docstring)."""

    source: Digest
    #: 'digest' (the stored blob's digest) or 'diff_id' (the uncompressed tar's)
    source_kind: str
    filters: tuple[dict[str, Any], ...]
    #: 'stored' or 'uncompressed'
    form: str
    compression: str | None = None
    level: int | None = None

    @classmethod
    def build(
        cls,
        source: Digest,
        source_kind: str,
        filters: Sequence[dict[str, Any]],
        form: str,
        compression: str | None,
        level: int | None,
    ) -> CacheKey:
        if form != "stored":
            compression, level = None, None
        elif compression is not None:
            level = validate_level(compression, level)
        return cls(source, source_kind, tuple(filters), form, compression, level)

    def as_json(self) -> dict[str, Any]:
        from .. import __version__  # the package is fully imported by the time keys are built

        return {
            "format": FORMAT,
            "occystrap": __version__,
            "source": str(self.source),
            "source_kind": self.source_kind,
            "filters": list(self.filters),
            "form": self.form,
            "compression": self.compression,
            "level": self.level,
        }

    @property
    def id(self) -> str:
        """sha256 (hex) of the canonical JSON: the entry's file name."""
        return hashlib.sha256(canonical(self.as_json())).hexdigest()
