"""``registry://HOST[:PORT]/NAME[:TAG|@sha256:DIGEST]`` as a destination.

Layers arrive as stored (``LayerForm.STORED``) and may be pushed from several threads.

* A layer whose ``origin`` is another repository of this host (copied unchanged) is
  mounted from there first (``mount_layer``): one ``POST``, no ``HEAD`` and nothing read.
  A registry that refuses is not asked to mount again in this run.
* Any other layer whose digest is known (copied unchanged) is pushed straight from the
  stream: ``HEAD`` first (present: nothing is sent), a cross-repository mount when an
  earlier push put the blob in another repository of this host (:mod:`.locations`), else
  an upload whose requests are streamed
  from the stream as it is read (see :mod:`.upload`), so memory stays flat whatever the
  layer's size. When the bytes are the source's stored blob and the source can open a layer
  twice, bytes that must be re-sent after a failed request are read again from the source
  (``Layer.open``); otherwise the upload keeps one chunk in memory to re-send it.
* A layer compressed on the fly has no digest until its last byte. It is spooled to a
  temporary file (``--temp-dir``) while it is hashed, then ``HEAD`` and, only if absent, a
  mount from a repository an earlier push put it in, else an upload from the file (one
  ``PUT`` up to 32 MiB, chunks beyond; restartable after a failure). Compression is
  deterministic, so a rerun of a killed push finds the blobs it already sent and transfers
  nothing twice; streaming instead would re-send them all.
* ``put_config`` uploads the config (mounted too, without a ``HEAD`` first, when the
  image's layers all came from one repository of this host and it is unchanged; a refused
  mount's session then takes the config's few bytes); ``put_manifest`` only records it.
  ``commit`` pushes the exact bytes with ``Content-Type`` = their media type to the tag (or
  to the digest the URI names) and returns ``pushed HOST/NAME:TAG@sha256:…``. Nothing is
  tagged before.
* It can hold an index (``holds_index``): manifests put before ``put_index`` are pushed by
  digest, then ``commit`` pushes the (last) index to the tag.

``default_family`` is ``docker``: an image that arrives without a manifest (docker-save
tarballs, the Docker daemon, schema 1) is pushed as Docker schema 2, as ``docker push`` would;
zstd layers force OCI media types (the copy engine decides that).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import BinaryIO

from ...blobio.spool import spool
from ...errors import OutputError
from ...image import Image
from ...model.config import ImageConfig
from ...model.descriptor import Descriptor
from ...model.digest import Digest
from ...model.manifest import Index, Manifest
from ...model.media_types import MediaType
from ..base import BlobStream, LayerForm, LayerWrite, RunContext, SinkCapabilities
from .client import RegistryClient
from .connect import locations_dir, open_client
from .locations import BlobLocations
from .options import RegistrySinkOptions
from .reference import RegistryReference
from .reference import parse as parse_reference
from .upload import Readable

log = logging.getLogger(__name__)


def open_sink(target: str, options: RegistrySinkOptions, ctx: RunContext) -> RegistrySink:
    """A sink pushing to ``target``; the registry is contacted now, so auth/TLS fail early."""
    ref = parse_reference(target)
    client = open_client(ref.host, ctx, insecure=options.insecure, tls_verify=options.tls_verify)
    try:
        client.ping()
    except BaseException:
        client.close()
        raise
    locations = BlobLocations(locations_dir(ctx), ref.host)
    locations.sweep()
    return RegistrySink(client, ref, ctx, locations)


class RegistrySink:
    capabilities = SinkCapabilities(
        layer_form=LayerForm.STORED,
        thread_safe=True,
        default_family="docker",
        holds_index=True,
        mounts_layers=True,
        keeps_layers=True,  # an uploaded blob stays in the registry
    )

    def __init__(
        self,
        client: RegistryClient,
        ref: RegistryReference,
        ctx: RunContext,
        locations: BlobLocations | None = None,
    ) -> None:
        self.client, self.ref, self.ctx = client, ref, ctx
        self.repo = ref.repository
        self.locations = locations or BlobLocations(None, ref.host)
        self._lock = threading.Lock()
        self._held: dict[Digest, int] = {}
        self._pending: list[Manifest | Index] = []
        self._config_origin: dict[Digest, str] = {}
        self._closed = False
        self._sequential = False
        self._absent: set[Digest] = set()  # HEAD just said so: put_layer need not ask again
        self._mounts_refused = False  # the registry refused a mount from a source repository

    def begin(self, image: Image) -> None:
        log.debug("pushing %s to %s", image.reference, self.ref)
        self._sequential = image.sequential
        origins = {layer.origin for layer in image.layers if layer.origin}
        if len(origins) == 1:  # the config lives where the layers do: mount it too
            with self._lock:
                self._config_origin[image.config.digest] = origins.pop()

    # -- blobs --------------------------------------------------------------------------

    def mount_layer(self, info: LayerWrite) -> Descriptor | None:
        source = self._origin_repository(info.source.origin)
        if source is None or info.digest is None or info.size is None:
            return None
        with self._lock:
            if self._mounts_refused:
                return None
            if info.digest in self._held:  # another image of an index brought it already
                return None  # has_layer answers without a request
        mounted = self.client.mount_blob(self.repo, info.digest, source)
        if not mounted:
            if mounted is False:  # refused: the source repository has every blob it served,
                with self._lock:  # so this registry does not mount; ask no more
                    self._mounts_refused = True
            log.info("layer %d %s: no mount from %s", info.index, info.digest, source)
            return None
        log.info("layer %d %s: mounted from %s", info.index, info.digest, source)
        self._remember(info.digest, info.size)
        self.locations.note(info.digest, self.repo)
        return Descriptor(info.media_type, info.digest, info.size)

    def has_layer(self, digest: Digest) -> Descriptor | None:
        with self._lock:
            size = self._held.get(digest)
        if size is None:
            found = self.client.head_blob(self.repo, digest)
            if found is None:
                with self._lock:
                    self._absent.add(digest)
            if found is None or found < 0:
                return None
            size = self._remember(digest, found)
        return Descriptor("application/octet-stream", digest, size)

    def put_layer(self, blob: BlobStream, info: LayerWrite) -> Descriptor:
        if info.digest is not None:
            source = self._origin_repository(info.source.origin)
            mount = self._mount_source(source, info.digest)
            with self._lock:
                asked = info.digest in self._absent
                self._absent.discard(info.digest)
            result = self.client.upload_blob(
                self.repo,
                blob,
                info.digest,
                info.size,
                mount_from=mount,
                reopen=self._reopener(info),
                check=not asked,
            )
            size = info.size if info.size is not None else result.size
            digest = info.digest
        else:
            with spool(blob, self.ctx.temp_dir) as spooled:
                result = self.client.upload_blob(
                    self.repo,
                    spooled.open,
                    spooled.digest,
                    spooled.size,
                    mount_from=self.locations.where(spooled.digest, besides=self.repo),
                )
            digest, size = spooled.digest, spooled.size
        if result.outcome == "uploaded":
            self.ctx.stats.add(bytes_written=size)
        log.info("layer %d %s: %s", info.index, digest, result.outcome)
        self._remember(digest, size)
        self.locations.note(digest, self.repo)
        return Descriptor(info.media_type, digest, size)

    def put_config(self, config: ImageConfig) -> Descriptor:
        with self._lock:
            origin = self._config_origin.get(config.digest)
        source = self._origin_repository(origin)  # where the layers came from
        mount = self._mount_source(source, config.digest)
        self.client.upload_blob(
            self.repo,
            io.BytesIO(config.raw),
            config.digest,
            config.size,
            mount_from=mount,
            check=source is None or mount != source,  # mount from the source: no HEAD first
        )
        self._remember(config.digest, config.size)
        self.locations.note(config.digest, self.repo)
        return Descriptor(MediaType.OCI_CONFIG, config.digest, config.size)

    def _reopener(self, info: LayerWrite) -> Callable[[], Readable] | None:
        """A fresh reader of the bytes being written, when they are the source's stored blob
        (copied unchanged) and the source can open a layer more than once."""
        layer = info.source
        if self._sequential or layer.descriptor is None or layer.descriptor.digest != info.digest:
            return None
        return lambda: _Opened(layer.open())

    def _origin_repository(self, origin: str | None) -> str | None:
        """The repository ``origin`` (``HOST/REPOSITORY``) names when it is another one of
        this registry."""
        if origin and "/" in origin:
            host, repository = origin.split("/", 1)
            if host == self.client.host and repository != self.repo:
                return repository
        return None

    def _mount_source(self, source: str | None, digest: Digest) -> str | None:
        """The repository of this registry ``digest`` can be mounted from: ``source``, the
        repository it came from when that is here (:meth:`_origin_repository`), else where
        an earlier push put it; None once the registry refused a mount."""
        with self._lock:
            if self._mounts_refused:
                return None
        return source or self.locations.where(digest, besides=self.repo)

    def _remember(self, digest: Digest, size: int) -> int:
        with self._lock:
            self._held[digest] = size
        return size

    # -- manifests ----------------------------------------------------------------------

    def put_manifest(self, manifest: Manifest) -> None:
        with self._lock:
            self._pending.append(manifest)

    def put_index(self, index: Index) -> None:
        with self._lock:
            children, self._pending = self._pending, [index]
        for doc in children:
            self._push(doc, str(doc.digest))

    def commit(self) -> str:
        try:
            if not self._pending:
                raise OutputError(f"nothing to push to {self.ref}: no manifest was written")
            *children, top = self._pending
            for doc in children:
                self._push(doc, str(doc.digest))
            target = str(self.ref.digest) if self.ref.digest else (self.ref.tag or "latest")
            digest = self._push(top, target)
        finally:
            self._close()
        name = f"{self.ref.host}/{self.repo}"
        shown = f"{name}@{digest}" if self.ref.digest else f"{name}:{target}@{digest}"
        if isinstance(top, Index):
            return f"pushed {shown} (index of {len(top.manifests)} manifests)"
        return f"pushed {shown}"

    def _push(self, doc: Manifest | Index, target: str) -> Digest:
        return self.client.put_manifest(self.repo, target, doc.raw, doc.media_type)

    def abort(self) -> None:
        """Nothing was tagged; blobs already sent stay unreferenced (registry GC removes
        them). Upload sessions are cancelled by the uploads that fail."""
        self._pending.clear()
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.ctx.stats.add(retries=self.client.stats.retries)
            self.client.close()


class _Opened:
    """The reader a context manager yields; ``close`` leaves the context."""

    def __init__(self, opened: AbstractContextManager[BinaryIO]) -> None:
        self._cm: AbstractContextManager[BinaryIO] | None = opened
        self._f = opened.__enter__()

    def read(self, n: int = -1, /) -> bytes:
        return self._f.read(n)

    def close(self) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            cm.__exit__(None, None, None)
