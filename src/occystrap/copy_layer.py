"""One layer's route into the sink: the part of the copy engine that works on one layer.

For each layer :class:`LayerCopier` picks one of four routes, from what the sink wants
(``SinkCapabilities.layer_form``) and what the filters do:

* **pass** (here): the stored bytes go to the sink unchanged (verified against their
  descriptor); a sink that already holds the blob is skipped before anything is read. A
  sink that mounts (a registry) first takes the blob by reference from another of its
  repositories when the layer came from there; one that adopts local copies (an OCI
  layout) hard-links the source's verified copy instead.
* **convert** (``occystrap.copy_convert``): no filter rewrites, but the form must change:
  decompress for tar/dir/bundle sinks (the diff_id is checked on the way), or compress an
  uncompressed layer for a registry or layout.
* **rewrite** (``occystrap.copy_filtered``): decompress, run the tar entries through the
  filter chain, re-serialise. Uncompressed sinks take that stream directly. For stored
  sinks it is hashed, compressed and spooled (compressed) in one pass, then handed over
  with its digest and size known; if the chain changed nothing, the spool is dropped and
  the original blob is passed instead (same digest).
* **observe** (``occystrap.copy_filtered``): filters only look: the stored bytes pass
  unchanged while a second thread decompresses a copy of the stream for the observers.

The convert and rewrite routes' modules (the tar reader and writer, the filters, the
layer cache, the compressors) are imported when a layer first takes them, so a copy
that only passes blobs (registry to registry or to a layout) does not load them at
start-up.

Within a layer, reading and decompressing, tar parsing and filtering, and hashing,
compressing and writing run in threads of their own (``occystrap.copy_stages``), since
hashing, (de)compression and I/O release the GIL. Bytes the source verifies against their
descriptor as they stream are not hashed a second time.

Layer cache (``ctx.layer_cache``, see ``occystrap.cache`` and ``occystrap.copy_cache``):
the convert and rewrite routes look the layer up before opening it (key: source digest,
filter chain, form, compression). A hit feeds the cached blob to the sink (or skips it
when the sink has it); a miss records what the sink reads and publishes it once the
source bytes proved to be what the key names. The rewrite route is cached only when every
filter of the chain rewrites and none observes.

Progress: every layer's stored bytes pass a ``ProgressReader`` that reports them to
``ctx.reporter.layer_progress`` about every MiB or 100 ms.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

from .blobio.readers import IterReader, drain
from .blobio.verify import HashingReader
from .copy_stages import KnownBlob, Stage, chunks_of
from .events import ProgressReader
from .image import Image, Layer
from .model.descriptor import Descriptor
from .model.digest import Digest
from .model.media_types import is_nondistributable, layer_media_type
from .transports.base import (
    AdoptingSink,
    LayerForm,
    LayerWrite,
    MountingSink,
    RunContext,
    Sink,
)

if TYPE_CHECKING:
    from .blobio.tee import Tap
    from .filters.base import Filter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """The outcome of one layer: what the sink holds and the diff_id of its content."""

    descriptor: Descriptor
    diff_id: Digest | None
    outcome: str  # copied | converted | rewritten | skipped | cached | mounted
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
        self._stored_counts = Counter(layer.stored_digest for layer in image.layers)

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
        if self.chain:
            from . import copy_filtered  # loaded when a layer first goes through filters

            if self.rewriters:
                written = copy_filtered.rewrite(self, layer)
            else:
                written = copy_filtered.observe(self, layer)
        else:
            written = self.pass_or_convert(layer)
        log.debug("layer %d (%s): %s", layer.index, layer.label, written.outcome)
        self._drop_copy(layer)
        reporter.layer_finished(layer.index, written.outcome)
        self.ctx.stats.add(
            layers=1,
            layers_skipped=int(written.outcome == "skipped"),
            layers_mounted=int(written.outcome == "mounted"),
        )
        return written

    def _drop_copy(self, layer: Layer) -> None:
        """The sink holds the layer for good and a rerun would skip it: what the source
        kept of it for a rerun (``Layer.drop_local_copy``) goes now. Not when filters made
        the layer (a rerun filters the source's bytes again), nor when another layer of the
        image has the same stored blob."""
        if (
            layer.drop_local_copy is not None
            and not self.chain
            and self.sink.capabilities.keeps_layers
            and self._stored_counts[layer.stored_digest] == 1
        ):
            layer.drop_local_copy()

    def stored_is_plain(self, layer: Layer) -> bool:
        return layer.compression == "none"

    def _must_compress(self, layer: Layer) -> bool:
        """A plain stored layer bound for a sink that stores layers compressed."""
        return (
            self.form is LayerForm.STORED
            and self.stored_is_plain(layer)
            and self.sink.capabilities.compress_uncompressed
            and self.ctx.compression != "none"
            and not is_nondistributable(layer.media_type)
        )

    def pass_or_convert(self, layer: Layer) -> Written:
        """The layer without filters: passed as stored, or converted to the sink's form."""
        if self.form is LayerForm.STORED and not self._must_compress(layer):
            return self.pass_stored(layer)
        from . import copy_convert  # loaded when a layer first changes form

        if self.form is LayerForm.STORED:
            return copy_convert.compress(self, layer)
        return copy_convert.decompress(self, layer)

    def pass_stored(self, layer: Layer) -> Written:
        """The pass route: the stored blob, unchanged (mounted, skipped, adopted or copied)."""
        mounted = self._mount(layer)
        if mounted is not None:
            return Written(mounted, layer.diff_id, "mounted", unchanged=True)
        if layer.descriptor is not None:
            held = self.sink.has_layer(layer.descriptor.digest)
            if held is not None:
                held = dataclasses.replace(held, media_type=self.media_type_for(layer))
                return Written(held, layer.diff_id, "skipped", unchanged=True)
        adopted = self._adopt(layer)
        if adopted is not None:
            return Written(adopted, layer.diff_id, "copied", unchanged=True)
        with ExitStack() as stack:
            opened = self.open_verified(layer, stack)
            stream = IterReader(stack.enter_context(Stage(chunks_of(opened), "layer-read")))
            digest = layer.stored_digest
            # the source verifies the stored bytes against their descriptor as they stream
            blob = KnownBlob(stream, digest) if digest is not None else HashingReader(stream)
            desc = self.sink.put_layer(blob, self._stored_write(layer))
            return Written(desc, layer.diff_id, "copied", unchanged=True)

    def _mount(self, layer: Layer) -> Descriptor | None:
        """For a sink that mounts (a registry): the layer taken by reference from another
        repository of the same registry that holds it, before anything is asked or read.
        None when the sink cannot (the layer did not come from there, or it refused)."""
        if not self.sink.capabilities.mounts_layers or layer.descriptor is None:
            return None
        return cast(MountingSink, self.sink).mount_layer(self._stored_write(layer))

    def _stored_write(self, layer: Layer) -> LayerWrite:
        """The LayerWrite of the layer's stored blob, unchanged (digest and size as the
        source knows them)."""
        return LayerWrite(
            layer.index,
            self.media_type_for(layer),
            layer.stored_digest,
            layer.stored_size,
            layer.diff_id,
            layer,
        )

    def _adopt(self, layer: Layer) -> Descriptor | None:
        """For a sink that adopts local copies (an OCI layout): read the layer once to its
        end, so that its source keeps a complete copy on disk, verified as it was read,
        and let the sink hard-link it. The download is then written once, not once into
        the resume cache and again by the sink. None when there is no such copy."""
        if (
            not self.sink.capabilities.adopts_local_copies
            or layer.local_copy is None
            or layer.descriptor is None
            or self.tap is not None
        ):
            return None
        with ExitStack() as stack:
            drain(self.open_verified(layer, stack))
        path = layer.local_copy()
        if path is None:
            return None
        return cast(AdoptingSink, self.sink).adopt_layer(path, self._stored_write(layer))

    # -- stream plumbing ----------------------------------------------------------------

    @property
    def tap(self) -> Tap | None:
        """This thread's observers' tap (the observe route), which sees every stored byte."""
        tap: Tap | None = getattr(self._local, "tap", None)
        return tap

    @tap.setter
    def tap(self, tap: Tap | None) -> None:
        self._local.tap = tap

    def open_verified(self, layer: Layer, stack: ExitStack) -> BinaryIO:
        stream: BinaryIO = stack.enter_context(layer.open())
        tap = self.tap
        if tap is not None:
            stream = tap.wrap(stream)
        progress = ProgressReader(stream, self.ctx.reporter, layer.index)
        stack.callback(progress.flush)
        return cast(BinaryIO, progress)

    def media_type_for(self, layer: Layer) -> str:
        if is_nondistributable(layer.media_type) or layer.compression is None:
            return layer.media_type
        if layer.media_type.startswith(("application/vnd.oci.", "application/vnd.docker.")):
            return layer_media_type(layer.compression, self.oci)
        return layer.media_type

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
