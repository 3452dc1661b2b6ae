"""The routes of a layer through filters.

* :func:`rewrite`: decompress, run the tar entries through the filter chain, re-serialise,
  in three threads: read and decompress | parse, filter and serialise | hash (and compress
  and spool, for a stored sink). Uncompressed sinks take the stream directly; stored sinks
  get the spooled blob with its digest and size known. When the chain changed nothing, the
  spool is dropped and the original blob is passed instead (same digest).
* :func:`observe`: filters only look: the stored bytes take the route they would take
  without filters while a second thread decompresses a copy of the stream for the
  observers.

The rewrite route is looked up in the layer cache (``occystrap.copy_cache``) only when
every filter of the chain rewrites and none observes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, BinaryIO

from .blobio.readers import IterReader, drain
from .blobio.tee import observe_copy
from .blobio.verify import Expect, HashingReader, VerifyingReader
from .cache.key import chain_identity
from .cache.recording import Recording
from .copy_cache import cache_key, from_cache
from .copy_entries import ChangeTracker, decompressed, through_chain
from .copy_layer import Written
from .copy_stages import KnownBlob, Stage, chunks_of, hashed, pack
from .filters.base import Filter, LayerView
from .model.media_types import layer_media_type
from .tario.entry import TarEntry
from .tario.reader import iter_entries
from .tario.writer import iter_tar_bytes
from .transports.base import LayerForm, LayerWrite

if TYPE_CHECKING:
    from .copy_layer import LayerCopier
    from .image import Layer


def observe(copier: LayerCopier, layer: Layer) -> Written:
    """Observers look at a decompressed copy while the bytes take their normal route."""
    view = _view(copier, layer)

    def consume(stream: BinaryIO) -> None:
        plain, _ = decompressed(stream, layer)
        reader = iter_entries(plain, what=f"layer {layer.index}")
        entries: Iterator[TarEntry] = ChangeTracker().count_in(reader, view.source_end)
        for f in copier.chain:
            entries = f.process(entries, view)
        for entry in entries:
            del entry  # observers act as entries flow; bodies are skipped by the reader

    with observe_copy(consume) as tap:
        copier.tap = tap
        try:
            written = copier.pass_or_convert(layer)
        finally:
            copier.tap = None
        if not tap.used:  # the sink already had it; observers still need to see it
            with layer.open() as stream:
                drain(tap.wrap(stream))
        return written


def rewrite(copier: LayerCopier, layer: Layer) -> Written:
    """The layer's entries through the filter chain (from the layer cache when it can)."""
    key = cache_key(copier, layer, _replayable(copier.chain))
    cached = from_cache(copier, layer, key)
    if cached is not None:
        return cached
    with Recording(copier.cache, key) as rec:
        return _rewrite(copier, layer, rec)


def _rewrite(copier: LayerCopier, layer: Layer, rec: Recording) -> Written:
    view = _view(copier, layer)
    state = ChangeTracker()
    sink, ctx = copier.sink, copier.ctx
    compression = ctx.compression
    with ExitStack() as stack:
        stream, plain_kind = decompressed(
            rec.watch_stored(copier.open_verified(layer, stack)), layer
        )
        d = layer.descriptor
        # The content must be what the config says; the source already verifies plain
        # stored bytes whose digest is the diff_id, so they are not hashed twice.
        source_checks = plain_kind == "none" and d is not None and d.digest == layer.diff_id
        if layer.diff_id is not None and not source_checks:
            what = f"layer {layer.index} (diff_id)"
            stream = VerifyingReader(stream, Expect(layer.diff_id), what)
        stream = rec.watch_plain(stream)
        plain = IterReader(stack.enter_context(Stage(chunks_of(stream), "layer-read")))
        reader = iter_entries(plain, what=f"layer {layer.index}")
        members = through_chain(reader, copier.chain, view, state)
        chunks = state.keep_trailer(iter_tar_bytes(members), view.source_end)
        diff_hash = hashlib.sha256()
        if copier.form is LayerForm.STORED:  # the diff_id is hashed here, not by pack()
            chunks = hashed(chunks, diff_hash)
        tar = stack.enter_context(Stage(chunks, "layer-tar"))
        if copier.form is LayerForm.UNCOMPRESSED:
            out = HashingReader(IterReader(tar))
            media_type = layer_media_type("none", copier.oci)
            info = LayerWrite(layer.index, media_type, None, None, None, layer)
            desc = sink.put_layer(rec.tee(out), info)
            changed = state.changed or out.digest() != layer.diff_id
            outcome = "rewritten" if changed else "copied"
            unchanged = not changed and copier.stored_is_plain(layer)
            rec.done(
                diff_id=out.digest(),
                compression="none",
                unchanged=unchanged,
                outcome=outcome,
                expect=out.digest(),
            )
            return Written(desc, out.digest(), outcome, unchanged=unchanged)
        packed = pack(tar, compression, ctx.compression_level, ctx.temp_dir, plain=diff_hash)
    with packed:
        # Every entry went through with its original header and body: the content is the
        # source's (only the end-of-archive padding may differ), so keep the stored blob.
        if not state.changed and not copier.stored_is_plain(layer) and not copier.image.sequential:
            packed.close()
            rec.passthrough(layer.diff_id)
            return copier.pass_stored(layer)
        outcome = "rewritten" if state.changed else "converted"
        blob = packed.blob
        media_type = layer_media_type(compression, copier.oci)
        rec.done(
            diff_id=packed.diff_id,
            compression=compression,
            unchanged=False,
            outcome=outcome,
            expect=blob.digest,
        )
        held = sink.has_layer(blob.digest)
        if held is not None:
            with blob.open() as spooled:
                rec.copy_from(spooled)
            desc = dataclasses.replace(held, media_type=media_type)
            return Written(desc, packed.diff_id, outcome, unchanged=False)
        info = LayerWrite(layer.index, media_type, blob.digest, blob.size, packed.diff_id, layer)
        with blob.open() as spooled:
            desc = sink.put_layer(KnownBlob(rec.tee(spooled), blob.digest), info)
        return Written(desc, packed.diff_id, outcome, unchanged=False)


def _replayable(chain: list[Filter]) -> list[dict[str, Any]] | None:
    """The chain's identities for the layer cache, or None when its result must not be
    replayed from there (a filter observes, or does not rewrite)."""
    if not all(f.rewrites_layers and not f.observes_layers for f in chain):
        return None
    return chain_identity(chain)


def _view(copier: LayerCopier, layer: Layer) -> LayerView:
    created_by = (layer.history or {}).get("created_by")
    return LayerView(
        layer.index,
        len(copier.image.layers),
        layer.stored_digest,
        layer.diff_id,
        layer.stored_size,
        layer.media_type,
        created_by if isinstance(created_by, str) else None,
        temp_dir=copier.ctx.temp_dir,
    )
