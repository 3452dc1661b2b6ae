"""copy_index(): copy every image of an index, then the index itself (``--all-platforms``).

Each entry of the source's index is opened as an Image (``Image.open_manifest``, or for
sources without it the caller's ``reopen``, which must yield the image with exactly that
manifest digest) and copied with :func:`copy_image` into the same sink, which must hold
indexes (``SinkCapabilities.holds_index``). The sink sees ``begin … put_manifest`` once per
image and no ``commit`` until the end (see ``transports/base.py``). Nested indexes are copied
depth first, up to :data:`MAX_DEPTH` levels.

When no image changed, the index is pushed with its original bytes, so its digest is kept.
When a filter changed an image, its entry gets the new digest, size and media type (platform
and annotations stay) and the index is rebuilt; an OCI child turns a Docker manifest list
into an OCI index.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from .copy import CopyResult, copy_image
from .errors import InvalidOption, LimitExceeded, MalformedInput, UnsupportedFormat
from .image import Image
from .model.config import ImageConfig
from .model.descriptor import Descriptor
from .model.digest import Digest
from .model.manifest import Index, Manifest, is_attestation
from .model.media_types import MediaType, is_index
from .transports.base import (
    AdoptingSink,
    BlobStream,
    IndexSink,
    LayerWrite,
    MountingSink,
    RunContext,
    Sink,
)

if TYPE_CHECKING:
    from .filters.base import Filter

log = logging.getLogger(__name__)

#: How many indexes may be nested below the top one.
MAX_DEPTH = 8
#: The annotation by which an attestation entry names the image it describes.
REFERENCE_DIGEST = "vnd.docker.reference.digest"

Reopen = Callable[[Descriptor], AbstractContextManager[Image]]


@dataclass(frozen=True)
class IndexCopyResult:
    reference: str
    index: Index
    images: tuple[CopyResult, ...]
    description: str


def copy_index(
    image: Image,
    sink: Sink,
    filters: Sequence[Filter],
    ctx: RunContext,
    reopen: Reopen | None = None,
) -> CopyResult | IndexCopyResult:
    """Copy ``image.index`` with every image it lists; a plain image is copied alone."""
    if image.index is None:
        return copy_image(image, sink, filters, ctx)
    if not sink.capabilities.holds_index or not callable(getattr(sink, "put_index", None)):
        raise InvalidOption(
            "--all-platforms needs a destination that can hold an index (registry://, ocidir://)"
        )
    target = cast(IndexSink, sink)
    results: list[CopyResult] = []
    try:
        index = _copy(image.index, image, target, filters, ctx, reopen, results, depth=0)
        target.put_index(index)
        description = target.commit()
    except BaseException:
        try:
            target.abort()
        except Exception:  # the original error matters more
            log.exception("abort failed")
        raise
    return IndexCopyResult(image.reference, index, tuple(results), description)


def _copy(
    index: Index,
    holder: Image,
    sink: IndexSink,
    filters: Sequence[Filter],
    ctx: RunContext,
    reopen: Reopen | None,
    results: list[CopyResult],
    depth: int,
) -> Index:
    if depth > MAX_DEPTH:
        raise LimitExceeded(f"indexes nested deeper than {MAX_DEPTH} levels in {holder.reference}")
    opener = holder.open_manifest or reopen
    if opener is None:
        raise UnsupportedFormat(f"{holder.reference}: this source cannot open index entries")
    done: dict[int, Manifest | Index] = {}
    renamed: dict[str, str] = {}
    # Images first, then the attestations that describe them (they name their image by
    # digest, so whether they still hold depends on what happened to it).
    order = sorted(range(len(index.manifests)), key=lambda i: is_attestation(index.manifests[i]))
    for i in order:
        desc = index.manifests[i]
        about = (desc.annotations or {}).get(REFERENCE_DIGEST)
        if is_attestation(desc) and about is not None and renamed.get(about, about) != about:
            log.warning(
                "dropping attestation %s: it describes %s, which the filters changed",
                desc.digest,
                about,
            )
            continue
        with opener(desc) as child:
            if is_index(desc.media_type):
                if child.index is None or child.index.digest != desc.digest:
                    raise MalformedInput(f"index entry {desc.digest} did not open as that index")
                sub = _copy(child.index, child, sink, filters, ctx, reopen, results, depth + 1)
                sink.put_index(sub)
                done[i] = sub
            else:
                if child.manifest is None or child.manifest.digest != desc.digest:
                    raise MalformedInput(
                        f"index entry {desc.digest} of {holder.reference} did not open as that manifest"
                    )
                # An attestation's layers are in-toto JSON, not tars: copied as they are.
                chain = () if is_attestation(desc) else filters
                result = copy_image(child, _Member(sink), chain, ctx)
                results.append(result)
                done[i] = result.manifest
        renamed[str(desc.digest)] = str(done[i].digest)
    entries = [
        dataclasses.replace(
            index.manifests[i],
            media_type=done[i].media_type,
            digest=done[i].digest,
            size=len(done[i].raw),
        )
        for i in range(len(index.manifests))
        if i in done
    ]
    if entries == list(index.manifests):
        return index
    media_type = index.media_type
    if media_type == MediaType.DOCKER_LIST and any(
        e.media_type.startswith("application/vnd.oci.") for e in entries
    ):
        media_type = MediaType.OCI_INDEX
    return Index.build(media_type, entries, index.annotations)


class _Member:
    """The index's sink as seen by one of its images: commit and abort belong to the index."""

    def __init__(self, sink: IndexSink) -> None:
        self.sink = sink
        self.capabilities = sink.capabilities

    def begin(self, image: Image) -> None:
        self.sink.begin(image)

    def has_layer(self, digest: Digest) -> Descriptor | None:
        return self.sink.has_layer(digest)

    def put_layer(self, blob: BlobStream, info: LayerWrite) -> Descriptor:
        return self.sink.put_layer(blob, info)

    def adopt_layer(self, path: str, info: LayerWrite) -> Descriptor | None:
        """Only called when the index's sink adopts local copies (same capabilities)."""
        return cast(AdoptingSink, self.sink).adopt_layer(path, info)

    def mount_layer(self, info: LayerWrite) -> Descriptor | None:
        """Only called when the index's sink mounts layers (same capabilities)."""
        return cast(MountingSink, self.sink).mount_layer(info)

    def put_config(self, config: ImageConfig) -> Descriptor:
        return self.sink.put_config(config)

    def put_manifest(self, manifest: Manifest) -> None:
        self.sink.put_manifest(manifest)

    def commit(self) -> str:
        return ""

    def abort(self) -> None:
        pass


__all__ = ["MAX_DEPTH", "IndexCopyResult", "Reopen", "copy_index"]
