"""``registry://HOST[:PORT]/NAME[:TAG|@sha256:DIGEST]`` as a source.

The manifest is fetched with every type we read in ``Accept``; its ``Content-Type`` and
``Docker-Content-Digest`` are checked by the client. An index (OCI index or Docker manifest
list, nested up to :data:`MAX_DEPTH` levels, loops refused) is resolved to one platform:
``?platform=``, else the run's ``--platform``, else linux/amd64, with the image-spec's
variant defaults (``Index.select``); when nothing matches the error lists what the index
offers. With ``--all-platforms`` any entry will do: ``copy_index`` walks them all through
``Image.open_manifest``, which opens an entry by digest. An explicit platform must also fit a
plain manifest's config.

The config blob is fetched and verified. Layers are fetched lazily by :mod:`.fetch` (verified
while they stream, ``Range``-resumed after a dropped connection, resumable across runs), may
be read in parallel (``sequential=False``), and carry ``origin`` so a registry sink on the
same host can mount them. ``Image.manifest`` holds the exact bytes (so an unchanged copy keeps
the digest); ``Image.index`` is the index the reference named, when it named one.

Schema 1 manifests are converted (:mod:`.schema1`). Their diff_ids exist nowhere but in the
layers, so those layers are fetched first, into temporary files (:mod:`.schema1_layers`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING, BinaryIO

from ...errors import DigestMismatch, LimitExceeded, PlatformNotFound, SizeMismatch
from ...image import Image, Layer
from ...model.config import ImageConfig
from ...model.descriptor import DEFAULT_PLATFORM, Descriptor, Platform
from ...model.digest import Digest
from ...model.jsonfile import MAX_JSON_BYTES
from ...model.manifest import Index, Manifest, parse
from ...model.media_types import SCHEMA1_TYPES
from ..base import RunContext
from .blobcache import BlobCache
from .client import RegistryClient
from .connect import open_client, partial_dir
from .fetch import open_layer
from .options import RegistrySourceOptions
from .reference import DOCKER_HUB, RegistryReference
from .reference import parse as parse_reference

if TYPE_CHECKING:
    from .schema1 import Schema1

log = logging.getLogger(__name__)

#: How many image indexes may be nested below the one a reference names.
MAX_DEPTH = 8


@contextmanager
def open_source(target: str, options: RegistrySourceOptions, ctx: RunContext) -> Iterator[Image]:
    """Open ``HOST/NAME[:TAG|@DIGEST]`` as an :class:`Image` (layers fetched on demand)."""
    ref = parse_reference(target)
    explicit = Platform.parse(options.platform) if options.platform else ctx.platform
    client = open_client(ref.host, ctx, insecure=options.insecure, tls_verify=options.tls_verify)
    with client, ExitStack() as keep:
        try:
            reader = RegistryReader(client, ref, ctx, explicit, keep)
            yield reader.image()
            reader.cache.clean()  # the job succeeded: what it kept for a rerun can go
        finally:
            ctx.stats.add(retries=client.stats.retries)


def familiar_name(ref: RegistryReference) -> str:
    """``HOST/NAME``, or Docker's short form for Docker Hub (``busybox``, ``user/app``)."""
    if ref.host == DOCKER_HUB:
        return ref.repository.removeprefix("library/")
    return ref.name


class RegistryReader:
    """Resolves manifests of one repository into Images."""

    def __init__(
        self,
        client: RegistryClient,
        ref: RegistryReference,
        ctx: RunContext,
        explicit: Platform | None,
        keep: ExitStack,
    ) -> None:
        self.client, self.ref, self.ctx, self.explicit = client, ref, ctx, explicit
        self.repo = ref.repository
        self.wanted = explicit or DEFAULT_PLATFORM
        self.keep = keep  # temporary files of schema 1 layers live as long as the source
        self.cache = BlobCache(partial_dir(ctx))
        self.cache.prepare()
        self.cache.sweep()
        self.origin = f"{ref.host}/{ref.repository}"

    def image(self) -> Image:
        doc = self._fetch(self.ref.ref, None)
        if isinstance(doc, Index):
            child, entry = self._descend(doc)
            return self._image(child, doc, entry)
        return self._image(doc, None, None, check_platform=True)

    def open_manifest(self, desc: Descriptor) -> AbstractContextManager[Image]:
        """The image (or, for an index, its image for our platform) that ``desc`` names."""

        @contextmanager
        def opened() -> Iterator[Image]:
            doc = self._fetch(str(desc.digest), desc)
            if isinstance(doc, Index):
                child, entry = self._descend(doc)
                yield self._image(child, doc, entry)
            else:
                yield self._image(doc, None, desc)

        return opened()

    # -- manifests ----------------------------------------------------------------------

    def _fetch(self, reference: str, expected: Descriptor | None) -> Manifest | Index | Schema1:
        got = self.client.get_manifest(self.repo, reference)
        what = f"manifest {self.client.host}/{self.repo}@{got.digest}"
        if expected is not None and len(got.raw) != expected.size:
            raise SizeMismatch(what, expected.size, len(got.raw))
        if got.media_type in SCHEMA1_TYPES:
            from . import schema1  # loaded only for a schema 1 image

            s1 = schema1.parse(got.raw, what)
            if got.digest not in (s1.digest, Digest.of_bytes(got.raw, got.digest.algorithm)):
                raise DigestMismatch(what, str(got.digest), str(s1.digest))
            return s1
        return parse(got.raw, got.media_type, what)

    def _descend(self, index: Index) -> tuple[Manifest | Schema1, Descriptor]:
        seen = {index.digest}
        for _ in range(MAX_DEPTH):
            entry = self._select(index)
            if entry.digest in seen:
                raise LimitExceeded(f"index loop at {entry.digest} in {self.ref}")
            seen.add(entry.digest)
            doc = self._fetch(str(entry.digest), entry)
            if not isinstance(doc, Index):
                return doc, entry
            index = doc
        raise LimitExceeded(f"indexes nested deeper than {MAX_DEPTH} levels in {self.ref}")

    def _select(self, index: Index) -> Descriptor:
        try:
            return index.select(self.wanted)
        except PlatformNotFound as e:
            if self.ctx.all_platforms and index.manifests:
                return index.manifests[0]  # copy_index visits every entry anyway
            raise PlatformNotFound(
                f"{e.wanted} in {self.ref}", e.available, single=e.single
            ) from None

    # -- images -------------------------------------------------------------------------

    def _image(
        self,
        doc: Manifest | Schema1,
        index: Index | None,
        entry: Descriptor | None,
        check_platform: bool = False,
    ) -> Image:
        if not isinstance(doc, Manifest):  # schema 1
            from .schema1_layers import fetch_layers  # only a schema 1 image needs it

            config, layers = fetch_layers(self, doc)
            manifest = None
        else:
            config, manifest = self._config(doc.config), doc
            layers = self._layers(doc, config)
        has_platform = "architecture" in config.obj
        if check_platform and self.explicit is not None and has_platform:
            if not self.explicit.matches(config.platform):
                raise PlatformNotFound(
                    f"{self.explicit} in {self.ref}", [str(config.platform)], single=True
                )
        platform = entry.platform if entry is not None and entry.platform else None
        return Image(
            name=familiar_name(self.ref),
            tag=self.ref.tag,
            config=config,
            layers=layers,
            manifest=manifest,
            index=index,
            platform=platform or (config.platform if has_platform else None),
            sequential=False,
            source_label=f"registry://{self.ref}",
            annotations=dict(entry.annotations or {}) if entry is not None else {},
            open_manifest=self.open_manifest,
        )

    def _config(self, desc: Descriptor) -> ImageConfig:
        what = f"image config {self.client.host}/{self.repo}@{desc.digest}"
        if desc.size > MAX_JSON_BYTES:
            raise LimitExceeded(
                f"{what} is {desc.size} bytes, over the {MAX_JSON_BYTES}-byte limit"
            )
        with self.client.open_blob(self.repo, desc.digest, desc.size) as blob:
            raw = b"".join(blob.chunks())
        return ImageConfig.parse(raw, what)

    def _layers(self, manifest: Manifest, config: ImageConfig) -> tuple[Layer, ...]:
        diff_ids = config.diff_ids
        if len(diff_ids) != len(manifest.layers):
            diff_ids = ()
        history = config.layer_history()
        keeps = self.cache.root is not None  # else a layer read ahead would be fetched again
        return tuple(
            Layer(
                index=i,
                media_type=d.media_type,
                descriptor=d,
                diff_id=diff_ids[i] if diff_ids else None,
                opener=self._opener(d),
                history=history[i] if i < len(history) else None,
                origin=self.origin,
                local_copy=functools.partial(self.cache.complete, d.digest) if keeps else None,
                drop_local_copy=functools.partial(self.cache.forget, d.digest) if keeps else None,
            )
            for i, d in enumerate(manifest.layers)
        )

    def _opener(self, desc: Descriptor) -> Callable[[], AbstractContextManager[BinaryIO]]:
        client, repo, cache, stats = self.client, self.repo, self.cache, self.ctx.stats
        cache.note(desc.digest)  # a successful job removes what an earlier run kept of it
        return lambda: open_layer(client, repo, desc.digest, desc.size, cache, stats)


__all__ = ["MAX_DEPTH", "RegistryReader", "familiar_name", "open_source"]
