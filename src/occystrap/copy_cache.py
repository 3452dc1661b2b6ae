"""The layer cache on the copy routes that change a layer (``occystrap.copy_convert``,
``occystrap.copy_filtered``): the key of a layer's route, and a hit fed to the sink.

Recording a miss is ``occystrap.cache.recording``'s job; the routes wrap their streams in
its :class:`~occystrap.cache.recording.Recording`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .blobio.verify import Expect, VerifyingReader
from .cache.key import CacheKey
from .copy_layer import Written
from .errors import IntegrityError
from .model.media_types import layer_media_type
from .transports.base import LayerWrite

if TYPE_CHECKING:
    from .copy_layer import LayerCopier
    from .image import Layer


def cache_key(
    copier: LayerCopier, layer: Layer, filters: list[dict[str, Any]] | None
) -> CacheKey | None:
    """The key of ``layer`` through ``filters`` (their identities; None: not cacheable)
    into the copier's sink form and compression, or None when nothing is cached."""
    d = layer.descriptor
    source, kind = (d.digest, "digest") if d is not None else (layer.diff_id, "diff_id")
    if copier.cache is None or filters is None or source is None or not source.supported:
        return None
    ctx = copier.ctx
    form = str(copier.form)
    return CacheKey.build(source, kind, filters, form, ctx.compression, ctx.compression_level)


def from_cache(copier: LayerCopier, layer: Layer, key: CacheKey | None) -> Written | None:
    """The layer from the cache: fed to the sink, or skipped when the sink has it."""
    cache = copier.cache
    hit = cache.lookup(key) if cache is not None and key is not None else None
    if hit is None or cache is None:
        return None
    sink = copier.sink
    with hit:
        entry = hit.entry
        copier.ctx.stats.add(cache_hits=1)
        if hit.blob is None or entry.blob is None:  # the chain leaves this layer as it is
            return copier.pass_stored(layer)
        media_type = layer_media_type(entry.compression, copier.oci)
        held = sink.has_layer(entry.blob)
        if held is not None:
            held = dataclasses.replace(held, media_type=media_type)
            return Written(held, entry.diff_id, "skipped", unchanged=entry.unchanged)
        what = f"layer {layer.index} (layer cache entry {entry.id[:12]})"
        blob = VerifyingReader(hit.blob, Expect(entry.blob, entry.size), what)
        info = LayerWrite(layer.index, media_type, entry.blob, entry.size, entry.diff_id, layer)
        try:
            desc = sink.put_layer(blob, info)
        except IntegrityError:
            cache.forget(entry)  # a damaged cache file: the next run redoes it
            raise
        return Written(desc, entry.diff_id, "cached", unchanged=entry.unchanged)
