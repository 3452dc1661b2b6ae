"""copy_image(): the one place that knows the order of work and owns concurrency.

The order: ``sink.begin``, every layer (each by its route, see ``occystrap.copy_layer``),
then the config rebuilt from the diff_ids actually written, then the manifest (the
source's exact bytes when nothing changed, filters' ``edit_annotations`` applied to its
annotations), then ``commit``; ``abort`` on any error.

Threads: layers run in parallel when the sink is thread safe and the source is not a
stream. Into a sink that takes them in order or writes one stream (tar://, which would
spool every layer that arrived early) they go one at a time, and the downloads of later
layers run ahead into the source's local keep (``Prefetch``). The threads within a layer
are ``occystrap.copy_stages``'.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .copy_layer import LayerCopier, Written
from .copy_stages import Prefetch
from .errors import OccystrapError
from .events import image_started
from .image import Image, Layer
from .model.config import ImageConfig
from .model.descriptor import Descriptor
from .model.manifest import Manifest
from .model.media_types import MediaType
from .transports.base import LayerForm, RunContext, Sink

if TYPE_CHECKING:
    from .filters.base import Filter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopyResult:
    reference: str
    manifest: Manifest
    config: ImageConfig
    layers: tuple[Written, ...]
    description: str


class _Engine(LayerCopier):
    """The image's order of work and the layers' scheduling around the layer routes."""

    # -- the image ------------------------------------------------------------------------

    def run(self) -> CopyResult:
        image, sink = self.image, self.sink
        sizes = [layer.stored_size for layer in image.layers]
        image_started(self.ctx.reporter, image.reference, sizes)
        sink.begin(image)
        try:
            written = self._layers()
            config = image.config
            for f in self.filters:
                config = f.edit_config(config)
            diff_ids = [w.diff_id for w in written]
            if all(d is not None for d in diff_ids):
                config = config.with_diff_ids([d for d in diff_ids if d is not None])
            config_desc = sink.put_config(config)
            manifest = self._manifest(written, config, config_desc)
            sink.put_manifest(manifest)
            description = sink.commit()
        except BaseException:
            try:
                sink.abort()
            except Exception:  # the original error matters more
                log.exception("abort failed")
            raise
        self.ctx.stats.add(images=1)
        result = CopyResult(image.reference, manifest, config, tuple(written), description)
        if self.chain:
            self._finish_filters(result)
        return result

    def _finish_filters(self, result: CopyResult) -> None:
        """Each filter's last look at the image as written (a report, a summary)."""
        from .filters.base import ImageView  # loaded only by a copy through filters

        view = ImageView(
            result.reference,
            result.manifest.digest,
            result.config,
            tuple(
                {
                    "digest": str(w.descriptor.digest),
                    "diff_id": str(w.diff_id) if w.diff_id else None,
                    "size": w.descriptor.size,
                    "media_type": w.descriptor.media_type,
                }
                for w in result.layers
            ),
        )
        for f in self.chain:
            f.finish(view, self.ctx.reporter)

    def _layers(self) -> list[Written]:
        layers = self.image.layers
        caps = self.sink.capabilities
        parallel = (
            self.ctx.jobs > 1
            and len(layers) > 1
            and not self.image.sequential
            and caps.thread_safe
            and not caps.ordered
            and not caps.writes_one_stream
        )
        if not parallel:
            ahead_layers = self._prefetchable()
            log.debug("layers one at a time, %d read ahead", len(ahead_layers))
            with Prefetch(ahead_layers, self.ctx.jobs - 1) as ahead:
                written = []
                for layer in layers:
                    ahead.wait_for(layer)
                    written.append(self.transfer(layer))
                return written
        with ThreadPoolExecutor(max_workers=self.ctx.jobs, thread_name_prefix="layer") as pool:
            futures: list[Future[Written]] = [pool.submit(self.transfer, layer) for layer in layers]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    for p in pending:
                        p.cancel()
                    raise exc
            return [f.result() for f in futures]

    def _prefetchable(self) -> list[Layer]:
        """The layers to download ahead while earlier ones are handled in turn.

        Layers go one at a time into a sink that takes them in order or writes one stream
        (tar://, which would spool every layer that arrived early, decompressed, to
        disk). Their downloads need not wait: a layer whose source keeps a fully read blob
        on local disk (``Layer.local_copy``, a registry's resume cache, written anyway) is
        read ahead and then served from disk in its turn. Not a layer the sink says it
        holds (its turn will skip it), nor when the layer cache could answer, nor when
        asking the sink early would change it.
        """
        if (
            self.ctx.jobs < 2
            or self.image.sequential
            or not self.sink.capabilities.has_layer_is_query
            or self.ctx.layer_cache is not None
        ):
            return []
        return [
            layer
            for layer in self.image.layers[1:]
            if layer.local_copy is not None and not self.held(layer)
        ]

    def _manifest(
        self, written: Sequence[Written], config: ImageConfig, config_desc: Descriptor
    ) -> Manifest:
        source = self.image.manifest
        annotations = self._annotations(source)
        if (
            source is not None
            and annotations == source.annotations
            and config.raw == self.image.config.raw
            and all(w.unchanged for w in written)
            and [w.descriptor.digest for w in written] == [d.digest for d in source.layers]
            and self.form is LayerForm.STORED
        ):
            return source
        media_type = MediaType.OCI_MANIFEST if self.oci else MediaType.DOCKER_MANIFEST
        config_type: str = MediaType.OCI_CONFIG if self.oci else MediaType.DOCKER_CONFIG
        if source is not None and source.config.media_type not in (
            MediaType.OCI_CONFIG,
            MediaType.DOCKER_CONFIG,
        ):
            config_type = source.config.media_type  # an artifact's own config type is kept
        config_d = Descriptor(config_type, config_desc.digest, config_desc.size)
        layers = [
            Descriptor(
                w.descriptor.media_type,
                w.descriptor.digest,
                w.descriptor.size,
                annotations=w.descriptor.annotations,
                urls=w.descriptor.urls,
            )
            for w in written
        ]
        return Manifest.build(media_type, config_d, layers, annotations)

    def _annotations(self, source: Manifest | None) -> Mapping[str, str] | None:
        """The source manifest's annotations as the filters edit them."""
        annotations = source.annotations if source is not None else None
        if not annotations:
            return annotations
        edited = dict(annotations)
        for f in self.filters:
            edit = getattr(f, "edit_annotations", None)  # optional for filters from elsewhere
            if edit is not None:
                edited = edit(edited)
        return annotations if edited == dict(annotations) else edited


def copy_image(image: Image, sink: Sink, filters: Sequence[Filter], ctx: RunContext) -> CopyResult:
    """Copy one image into ``sink`` through ``filters``; the sink is committed or aborted."""
    try:
        return _Engine(image, sink, filters, ctx).run()
    except OccystrapError:
        raise
