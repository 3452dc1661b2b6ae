"""The persistent layer cache (``--cache-dir``): outputs of earlier runs, reused.

A rerun of the same pipeline (same source layers, filter chain with the same options, same
compression settings) takes each layer it produced before from the cache instead of
fetching, filtering and compressing it again. See :mod:`.key` for what an entry is keyed
by and :mod:`.store` for the directory layout, locking and least-recently-used eviction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import exports

if TYPE_CHECKING:  # imported on first use
    from .entry import Entry
    from .key import FORMAT, CacheKey, chain_identity, filter_identity
    from .pending import Hit, Pending
    from .recording import Recording
    from .sizes import DEFAULT_MAX_SIZE, format_size, parse_size
    from .store import LayerCache, PruneResult

__getattr__ = exports(
    __name__,
    {
        "Entry": "entry",
        "FORMAT": "key",
        "CacheKey": "key",
        "chain_identity": "key",
        "filter_identity": "key",
        "Hit": "pending",
        "Pending": "pending",
        "Recording": "recording",
        "DEFAULT_MAX_SIZE": "sizes",
        "format_size": "sizes",
        "parse_size": "sizes",
        "LayerCache": "store",
        "PruneResult": "store",
    },
)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "FORMAT",
    "CacheKey",
    "Entry",
    "Hit",
    "LayerCache",
    "Pending",
    "PruneResult",
    "Recording",
    "chain_identity",
    "filter_identity",
    "format_size",
    "parse_size",
]
