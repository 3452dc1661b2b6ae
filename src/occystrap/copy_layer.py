"""One layer's route into the sink: the part of the copy engine that works on one layer.

For each layer :class:`LayerCopier` picks one of four routes, from what the sink wants
(``SinkCapabilities.layer_form``) and what the filters do:

* **pass**: the stored bytes go to the sink unchanged (verified against their descriptor);
  a sink that already holds the blob is skipped before anything is read. A sink that
  mounts (a registry) first takes the blob by reference from another of its repositories
  when the layer came from there; one that adopts local copies (an OCI layout) hard-links
  the source's verified copy instead.
* **convert**: no filter rewrites, but the form must change: decompress for tar/dir/bundle
  sinks (the diff_id is checked on the way), or compress an uncompressed layer for a
  registry or layout.
* **rewrite**: decompress, run the tar entries through the filter chain, re-serialise.
  Uncompressed sinks take that stream directly. For stored sinks it is hashed, compressed
  and spooled (compressed) in one pass, then handed over with its digest and size known;
  if the chain changed nothing, the spool is dropped and the original blob is passed
  instead (same digest).
* **observe**: filters only look: the stored bytes pass unchanged while a second thread
  decompresses a copy of the stream for the observers.

Within a layer, reading and decompressing, tar parsing and filtering, and hashing,
compressing and writing run in threads of their own (``occystrap.copy_stages``), since
hashing, (de)compression and I/O release the GIL. Bytes the source verifies against their
descriptor as they stream are not hashed a second time.

Layer cache (``ctx.layer_cache``, see ``occystrap.cache``): the convert and rewrite routes
look the layer up before opening it (key: source digest, filter chain, form, compression).
A hit feeds the cached blob to the sink (or skips it when the sink has it); a miss records
what the sink reads and publishes it once the source bytes proved to be what the key names.
The rewrite route is cached only when every filter of the chain rewrites and none observes.

Progress: every layer's stored bytes pass a ``ProgressReader`` that reports them to
``ctx.reporter.layer_progress`` about every MiB or 100 ms.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from .blobio.readers import IterReader, Reader, drain
from .blobio.tee import observe_copy
from .blobio.verify import HashingReader, VerifyingReader
from .cache.key import CacheKey, chain_identity
from .cache.recording import Recording
from .copy_entries import ChangeTracker, decompressed, through_chain
from .copy_stages import KnownBlob, Stage, chunks_of, compressed, hashed, pack
from .errors import IntegrityError
from .events import ProgressReader
from .filters.base import Filter, LayerView
from .image import Image, Layer
from .model.descriptor import Descriptor
from .model.digest import Digest
from .model.media_types import is_nondistributable, layer_media_type
from .tario.check import checked_tar
from .tario.entry import TarEntry
from .tario.reader import iter_entries
from .tario.writer import iter_tar_bytes
from .transports.base import (
    AdoptingSink,
    LayerForm,
    LayerWrite,
    MountingSink,
    RunContext,
    Sink,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """The outcome of one layer: what the sink holds and the diff_id of its content."""

    descriptor: Descriptor
    diff_id: Digest | None
    outcome: str  # copied | converted | rewritten | skipped | cached
    unchanged: bool  # same stored bytes as the source


class LayerCopier:
    """Takes one layer at a time (from any thread) into the sink by its route."""

    def __init__(
        self, image: Image, sink: Sink, filters: Sequence[Filter], ctx: RunContext
    ) -> None:
        self.image = image
        self.sink = sink
        self.ctx = ctx
        self.filters = list(filters)
        self.rewriters = [f for f in filters if f.rewrites_layers]
        self.chain = [f for f in filters if f.rewrites_layers or f.observes_layers]
        caps = sink.capabilities
        self.form = caps.layer_form
        self.oci = self._family_is_oci()
        self._local = threading.local()
        self.cache = ctx.layer_cache
        replayable = all(f.rewrites_layers and not f.observes_layers for f in self.chain)
        self._chain_key = chain_identity(self.chain) if replayable else None

    def _family_is_oci(self) -> bool:
        if self.ctx.compression == "zstd":
            return True
        if self.image.manifest is not None:
            return self.image.manifest.is_oci
        return self.sink.capabilities.default_family == "oci"

    # -- one layer ----------------------------------------------------------------------

    def transfer(self, layer: Layer) -> Written:
        reporter = self.ctx.reporter
        total = layer.stored_size
        reporter.layer_started(layer.index, layer.label, total)
        if self.rewriters:
            written = self._rewrite(layer)
        elif self.chain:
            written = self._observe(layer)
        else:
            written = self._pass_or_convert(layer)
        log.debug("layer %d (%s): %s", layer.index, layer.label, written.outcome)
        reporter.layer_finished(layer.index, written.outcome)
        self.ctx.stats.add(
            layers=1,
            layers_skipped=int(written.outcome == "skipped"),
            layers_mounted=int(written.outcome == "mounted"),
        )
        return written

    # -- the layer cache ------------------------------------------------------------------

    def _cache_key(self, layer: Layer, filters: list[dict[str, Any]] | None) -> CacheKey | None:
        d = layer.descriptor
        source, kind = (d.digest, "digest") if d is not None else (layer.diff_id, "diff_id")
        if self.cache is None or filters is None or source is None or not source.supported:
            return None
        ctx = self.ctx
        form = str(self.form)
        return CacheKey.build(source, kind, filters, form, ctx.compression, ctx.compression_level)

    def _from_cache(self, layer: Layer, key: CacheKey | None) -> Written | None:
        """The layer from the cache: fed to the sink, or skipped when the sink has it."""
        cache = self.cache
        hit = cache.lookup(key) if cache is not None and key is not None else None
        if hit is None or cache is None:
            return None
        with hit:
            entry = hit.entry
            self.ctx.stats.add(cache_hits=1)
            if hit.blob is None or entry.blob is None:  # the chain leaves this layer as it is
                return self._pass(layer)
            media_type = layer_media_type(entry.compression, self.oci)
            held = self.sink.has_layer(entry.blob)
            if held is not None:
                held = dataclasses.replace(held, media_type=media_type)
                return Written(held, entry.diff_id, "skipped", unchanged=entry.unchanged)
            what = f"layer {layer.index} (layer cache entry {entry.id[:12]})"
            blob = VerifyingReader(hit.blob, _Expect(entry.blob, entry.size), what)
            info = LayerWrite(layer.index, media_type, entry.blob, entry.size, entry.diff_id, layer)
            try:
                desc = self.sink.put_layer(blob, info)
            except IntegrityError:
                cache.forget(entry)  # a damaged cache file: the next run redoes it
                raise
            return Written(desc, entry.diff_id, "cached", unchanged=entry.unchanged)

    def _stored_is_plain(self, layer: Layer) -> bool:
        return layer.compression == "none"

    def _must_compress(self, layer: Layer) -> bool:
        """A plain stored layer bound for a sink that stores layers compressed."""
        return (
            self.form is LayerForm.STORED
            and self._stored_is_plain(layer)
            and self.sink.capabilities.compress_uncompressed
            and self.ctx.compression != "none"
            and not is_nondistributable(layer.media_type)
        )

    def _pass_or_convert(self, layer: Layer) -> Written:
        if self.form is LayerForm.STORED:
            if not self._must_compress(layer):
                return self._pass(layer)
            return self._compress(layer)
        # UNCOMPRESSED sink
        diff_id = layer.diff_id
        if diff_id is not None:
            held = self.sink.has_layer(diff_id)
            if held is not None:
                held = dataclasses.replace(held, media_type=layer_media_type("none", self.oci))
                return Written(held, diff_id, "skipped", unchanged=True)
        key = self._cache_key(layer, [])
        cached = self._from_cache(layer, key)
        if cached is not None:
            return cached
        with Recording(self.cache, key) as rec, ExitStack() as stack:
            stored = rec.watch_stored(self._open_verified(layer, stack))
            stream, compression = decompressed(stored, layer)
            stream = rec.watch_plain(stream)
            # The tar check (observers parse the tar themselves) runs where there is less
            # to do: with the decompression, or else here while the reader thread hashes.
            check = not self.chain
            if check and compression != "none":
                stream = stack.enter_context(checked_tar(stream, f"layer {layer.index}"))
            plain: Reader = IterReader(stack.enter_context(Stage(chunks_of(stream), "layer-read")))
            if check and compression == "none":
                plain = stack.enter_context(checked_tar(plain, f"layer {layer.index}"))
            blob: HashingReader | KnownBlob
            if diff_id is not None and compression == "none" and layer.stored_digest == diff_id:
                blob = KnownBlob(plain, diff_id)  # the source verifies exactly these bytes
            elif diff_id is not None:
                blob = VerifyingReader(
                    plain, _Expect(diff_id, None), f"layer {layer.index} (diff_id)"
                )
            else:
                blob = HashingReader(plain)
            media_type = layer_media_type("none", self.oci)
            info = LayerWrite(layer.index, media_type, diff_id, None, diff_id, layer)
            desc = self.sink.put_layer(rec.tee(blob), info)
            unchanged = self._stored_is_plain(layer)
            rec.done(
                diff_id=blob.digest(),
                compression="none",
                unchanged=unchanged,
                outcome="converted",
                expect=blob.digest(),
            )
            return Written(desc, blob.digest(), "converted", unchanged=unchanged)

    def _pass(self, layer: Layer) -> Written:
        mounted = self._mount(layer)
        if mounted is not None:
            return Written(mounted, layer.diff_id, "mounted", unchanged=True)
        if layer.descriptor is not None:
            held = self.sink.has_layer(layer.descriptor.digest)
            if held is not None:
                held = dataclasses.replace(held, media_type=self._media_type_for(layer))
                return Written(held, layer.diff_id, "skipped", unchanged=True)
        adopted = self._adopt(layer)
        if adopted is not None:
            return Written(adopted, layer.diff_id, "copied", unchanged=True)
        with ExitStack() as stack:
            opened = self._open_verified(layer, stack)
            stream = IterReader(stack.enter_context(Stage(chunks_of(opened), "layer-read")))
            digest = layer.stored_digest
            # the source verifies the stored bytes against their descriptor as they stream
            blob = KnownBlob(stream, digest) if digest is not None else HashingReader(stream)
            media_type = self._media_type_for(layer)
            info = LayerWrite(
                layer.index,
                media_type,
                digest,
                layer.stored_size,
                layer.diff_id,
                layer,
            )
            desc = self.sink.put_layer(blob, info)
            return Written(desc, layer.diff_id, "copied", unchanged=True)

    def _observe(self, layer: Layer) -> Written:
        """Observers look at a decompressed copy while the bytes take their normal route."""
        view = self._view(layer)

        def consume(stream: BinaryIO) -> None:
            plain, _ = decompressed(stream, layer)
            reader = iter_entries(plain, what=f"layer {layer.index}")
            entries: Iterator[TarEntry] = ChangeTracker().count_in(reader, view.source_end)
            for f in self.chain:
                entries = f.process(entries, view)
            for entry in entries:
                del entry  # observers act as entries flow; bodies are skipped by the reader

        with observe_copy(consume) as tap:
            self._local.tap = tap
            try:
                written = self._pass_or_convert(layer)
            finally:
                self._local.tap = None
            if not tap.used:  # the sink already had it; observers still need to see it
                with layer.open() as stream:
                    drain(tap.wrap(stream))
            return written

    def _rewrite(self, layer: Layer) -> Written:
        key = self._cache_key(layer, self._chain_key)
        cached = self._from_cache(layer, key)
        if cached is not None:
            return cached
        with Recording(self.cache, key) as rec:
            return self._rewrite_layer(layer, rec)

    def _rewrite_layer(self, layer: Layer, rec: Recording) -> Written:
        """Entries through the chain, in three threads: read and decompress | parse, filter
        and serialise | hash (and compress and spool, for a stored sink)."""
        view = self._view(layer)
        state = ChangeTracker()
        compression = self.ctx.compression
        with ExitStack() as stack:
            stream, plain_kind = decompressed(
                rec.watch_stored(self._open_verified(layer, stack)), layer
            )
            d = layer.descriptor
            # The content must be what the config says; the source already verifies plain
            # stored bytes whose digest is the diff_id, so they are not hashed twice.
            source_checks = plain_kind == "none" and d is not None and d.digest == layer.diff_id
            if layer.diff_id is not None and not source_checks:
                what = f"layer {layer.index} (diff_id)"
                stream = VerifyingReader(stream, _Expect(layer.diff_id, None), what)
            stream = rec.watch_plain(stream)
            plain = IterReader(stack.enter_context(Stage(chunks_of(stream), "layer-read")))
            reader = iter_entries(plain, what=f"layer {layer.index}")
            members = through_chain(reader, self.chain, view, state)
            chunks = state.keep_trailer(iter_tar_bytes(members), view.source_end)
            diff_hash = hashlib.sha256()
            if self.form is LayerForm.STORED:  # the diff_id is hashed here, not by pack()
                chunks = hashed(chunks, diff_hash)
            tar = stack.enter_context(Stage(chunks, "layer-tar"))
            if self.form is LayerForm.UNCOMPRESSED:
                out = HashingReader(IterReader(tar))
                media_type = layer_media_type("none", self.oci)
                info = LayerWrite(layer.index, media_type, None, None, None, layer)
                desc = self.sink.put_layer(rec.tee(out), info)
                changed = state.changed or out.digest() != layer.diff_id
                outcome = "rewritten" if changed else "copied"
                unchanged = not changed and self._stored_is_plain(layer)
                rec.done(
                    diff_id=out.digest(),
                    compression="none",
                    unchanged=unchanged,
                    outcome=outcome,
                    expect=out.digest(),
                )
                return Written(desc, out.digest(), outcome, unchanged=unchanged)
            level, temp_dir = self.ctx.compression_level, self.ctx.temp_dir
            packed = pack(tar, compression, level, temp_dir, plain=diff_hash)
        with packed:
            # Every entry went through with its original header and body: the content is the
            # source's (only the end-of-archive padding may differ), so keep the stored blob.
            if not state.changed and not self._stored_is_plain(layer) and not self.image.sequential:
                packed.close()
                rec.passthrough(layer.diff_id)
                return self._pass(layer)
            outcome = "rewritten" if state.changed else "converted"
            blob = packed.blob
            media_type = layer_media_type(compression, self.oci)
            rec.done(
                diff_id=packed.diff_id,
                compression=compression,
                unchanged=False,
                outcome=outcome,
                expect=blob.digest,
            )
            held = self.sink.has_layer(blob.digest)
            if held is not None:
                with blob.open() as spooled:
                    rec.copy_from(spooled)
                desc = dataclasses.replace(held, media_type=media_type)
                return Written(desc, packed.diff_id, outcome, unchanged=False)
            info = LayerWrite(
                layer.index, media_type, blob.digest, blob.size, packed.diff_id, layer
            )
            with blob.open() as spooled:
                desc = self.sink.put_layer(KnownBlob(rec.tee(spooled), blob.digest), info)
            return Written(desc, packed.diff_id, outcome, unchanged=False)

    def _compress(self, layer: Layer) -> Written:
        """An uncompressed stored layer for a registry or layout, in three threads: read
        (the diff_id is hashed here unless the source verifies it) | compress | the sink."""
        key = self._cache_key(layer, [])
        cached = self._from_cache(layer, key)
        if cached is not None:
            return cached
        compression = self.ctx.compression
        stored = layer.stored_digest
        known = stored if stored is not None and stored.algorithm == "sha256" else None
        plain_hash = None if known is not None else hashlib.sha256()
        with Recording(self.cache, key) as rec, ExitStack() as stack:
            stream = rec.watch_plain(rec.watch_stored(self._open_verified(layer, stack)))
            read = stack.enter_context(Stage(chunks_of(stream, plain_hash), "layer-read"))
            packing = Stage(compressed(read, compression, self.ctx.compression_level), "layer-pack")
            packed = HashingReader(IterReader(stack.enter_context(packing)))
            media_type = layer_media_type(compression, self.oci)
            info = LayerWrite(layer.index, media_type, None, None, known, layer)
            desc = self.sink.put_layer(rec.tee(packed), info)
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

    def _mount(self, layer: Layer) -> Descriptor | None:
        """For a sink that mounts (a registry): the layer taken by reference from another
        repository of the same registry that holds it, before anything is asked or read.
        None when the sink cannot (the layer did not come from there, or it refused)."""
        d = layer.descriptor
        if not self.sink.capabilities.mounts_layers or d is None:
            return None
        return cast(MountingSink, self.sink).mount_layer(self._stored_write(layer, d))

    def _stored_write(self, layer: Layer, d: Descriptor) -> LayerWrite:
        """The LayerWrite of the layer's stored blob, unchanged."""
        return LayerWrite(
            layer.index, self._media_type_for(layer), d.digest, d.size, layer.diff_id, layer
        )

    def _adopt(self, layer: Layer) -> Descriptor | None:
        """For a sink that adopts local copies (an OCI layout): read the layer once to its
        end, so that its source keeps a complete copy on disk, verified as it was read,
        and let the sink hard-link it. The download is then written once, not once into
        the resume cache and again by the sink. None when there is no such copy."""
        d = layer.descriptor
        if (
            not self.sink.capabilities.adopts_local_copies
            or layer.local_copy is None
            or d is None
            or getattr(self._local, "tap", None) is not None
        ):
            return None
        with ExitStack() as stack:
            drain(self._open_verified(layer, stack))
        path = layer.local_copy()
        if path is None:
            return None
        return cast(AdoptingSink, self.sink).adopt_layer(path, self._stored_write(layer, d))

    # -- stream plumbing ----------------------------------------------------------------

    def _open_verified(self, layer: Layer, stack: ExitStack) -> BinaryIO:
        stream: BinaryIO = stack.enter_context(layer.open())
        tap = getattr(self._local, "tap", None)
        if tap is not None:
            stream = tap.wrap(stream)
        progress = ProgressReader(stream, self.ctx.reporter, layer.index)
        stack.callback(progress.flush)
        return cast(BinaryIO, progress)

    def _media_type_for(self, layer: Layer) -> str:
        if is_nondistributable(layer.media_type) or layer.compression is None:
            return layer.media_type
        if layer.media_type.startswith(("application/vnd.oci.", "application/vnd.docker.")):
            return layer_media_type(layer.compression, self.oci)
        return layer.media_type

    def _view(self, layer: Layer) -> LayerView:
        created_by = (layer.history or {}).get("created_by")
        return LayerView(
            layer.index,
            len(self.image.layers),
            layer.stored_digest,
            layer.diff_id,
            layer.stored_size,
            layer.media_type,
            created_by if isinstance(created_by, str) else None,
            temp_dir=self.ctx.temp_dir,
        )

    def held(self, layer: Layer) -> bool:
        """The sink holds this layer, so its turn will not read it (filters aside)."""
        if self.chain:
            return False  # filters read every layer
        if self.form is LayerForm.STORED and not self._must_compress(layer):
            key = layer.stored_digest
        elif self.form is LayerForm.UNCOMPRESSED:
            key = layer.diff_id
        else:
            key = None
        return key is not None and self.sink.has_layer(key) is not None


@dataclass(frozen=True)
class _Expect:
    digest: Digest
    size: int | None
