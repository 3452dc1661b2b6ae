"""The convert route: a layer no filter rewrites, whose form the sink needs changed.

* :func:`decompress`: a sink that stores layers uncompressed (tar, dir, bundle) takes the
  decompressed tar; its diff_id is checked on the way, and the tar itself is checked
  (``occystrap.tario.check``) unless observers parse it anyway.
* :func:`compress`: an uncompressed stored layer for a sink that stores layers compressed
  (a registry or layout) is compressed at the run's setting, in three threads: read (the
  diff_id is hashed here unless the source verifies it) | compress | the sink.

Both look the layer up in the layer cache first and record a miss
(``occystrap.copy_cache``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from contextlib import ExitStack
from typing import TYPE_CHECKING

from .blobio.readers import IterReader, Reader
from .blobio.verify import Expect, HashingReader, VerifyingReader
from .cache.recording import Recording
from .copy_cache import cache_key, from_cache
from .copy_entries import decompressed
from .copy_layer import Written
from .copy_stages import KnownBlob, Stage, chunks_of, compressed
from .model.digest import Digest
from .model.media_types import layer_media_type
from .tario.check import checked_tar
from .transports.base import LayerWrite

if TYPE_CHECKING:
    from .copy_layer import LayerCopier
    from .image import Layer


def decompress(copier: LayerCopier, layer: Layer) -> Written:
    """The layer decompressed for a sink that stores layers uncompressed."""
    sink = copier.sink
    diff_id = layer.diff_id
    if diff_id is not None:
        held = sink.has_layer(diff_id)
        if held is not None:
            held = dataclasses.replace(held, media_type=layer_media_type("none", copier.oci))
            return Written(held, diff_id, "skipped", unchanged=True)
    key = cache_key(copier, layer, [])
    cached = from_cache(copier, layer, key)
    if cached is not None:
        return cached
    with Recording(copier.cache, key) as rec, ExitStack() as stack:
        stored = rec.watch_stored(copier.open_verified(layer, stack))
        stream, compression = decompressed(stored, layer)
        stream = rec.watch_plain(stream)
        # The tar check (observers parse the tar themselves) runs where there is less
        # to do: with the decompression, or else here while the reader thread hashes.
        check = not copier.chain
        if check and compression != "none":
            stream = stack.enter_context(checked_tar(stream, f"layer {layer.index}"))
        plain: Reader = IterReader(stack.enter_context(Stage(chunks_of(stream), "layer-read")))
        if check and compression == "none":
            plain = stack.enter_context(checked_tar(plain, f"layer {layer.index}"))
        blob: HashingReader | KnownBlob
        if diff_id is not None and compression == "none" and layer.stored_digest == diff_id:
            blob = KnownBlob(plain, diff_id)  # the source verifies exactly these bytes
        elif diff_id is not None:
            blob = VerifyingReader(plain, Expect(diff_id), f"layer {layer.index} (diff_id)")
        else:
            blob = HashingReader(plain)
        media_type = layer_media_type("none", copier.oci)
        info = LayerWrite(layer.index, media_type, diff_id, None, diff_id, layer)
        desc = sink.put_layer(rec.tee(blob), info)
        unchanged = copier.stored_is_plain(layer)
        rec.done(
            diff_id=blob.digest(),
            compression="none",
            unchanged=unchanged,
            outcome="converted",
            expect=blob.digest(),
        )
        return Written(desc, blob.digest(), "converted", unchanged=unchanged)


def compress(copier: LayerCopier, layer: Layer) -> Written:
    """An uncompressed stored layer compressed for a registry or layout."""
    key = cache_key(copier, layer, [])
    cached = from_cache(copier, layer, key)
    if cached is not None:
        return cached
    ctx = copier.ctx
    compression = ctx.compression
    stored = layer.stored_digest
    known = stored if stored is not None and stored.algorithm == "sha256" else None
    plain_hash = None if known is not None else hashlib.sha256()
    with Recording(copier.cache, key) as rec, ExitStack() as stack:
        stream = rec.watch_plain(rec.watch_stored(copier.open_verified(layer, stack)))
        read = stack.enter_context(Stage(chunks_of(stream, plain_hash), "layer-read"))
        packing = Stage(compressed(read, compression, ctx.compression_level), "layer-pack")
        packed = HashingReader(IterReader(stack.enter_context(packing)))
        media_type = layer_media_type(compression, copier.oci)
        info = LayerWrite(layer.index, media_type, None, None, known, layer)
        desc = copier.sink.put_layer(rec.tee(packed), info)
        if plain_hash is not None:
            known = Digest("sha256", plain_hash.hexdigest())
        rec.done(
            diff_id=known,
            compression=compression,
            unchanged=False,
            outcome="converted",
            expect=desc.digest,
        )
        return Written(desc, known, "converted", unchanged=False)
