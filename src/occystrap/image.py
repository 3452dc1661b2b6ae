"""Image and Layer: what a source offers. Descriptors are known up front; bytes only on open()."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .model.config import ImageConfig
from .model.descriptor import Descriptor, Platform
from .model.digest import Digest
from .model.manifest import Index, Manifest
from .model.media_types import layer_compression

#: A context manager yielding a binary reader of a layer's stored bytes.
Opener = Callable[[], AbstractContextManager[BinaryIO]]


@dataclass(eq=False)
class Layer:
    """One layer as the source stores it.

    ``descriptor`` describes the stored bytes (compressed or not) when the source knows
    them; ``open()`` yields exactly those bytes and the source verifies them against the
    descriptor while they stream. ``diff_id`` is the config's claim for the uncompressed
    tar. ``compression`` is 'gzip', 'zstd', 'none', or None when only sniffing can tell.
    """

    index: int
    media_type: str
    descriptor: Descriptor | None
    diff_id: Digest | None
    opener: Opener
    compression: str | None = None
    history: dict[str, Any] | None = None
    #: where the stored blob also lives, as ``HOST/REPOSITORY`` of a registry (set by the
    #: registry source), so a registry sink on the same host can mount it instead of uploading
    origin: str | None = None
    #: set when reading the layer to its end keeps its stored bytes on local disk until the
    #: job ends (a registry's resume cache), so a second open reads them there: the engine
    #: may read the layer ahead of its turn. Called, it gives the path of that complete,
    #: verified copy when there is one now; a sink that stores blobs may hard-link it.
    local_copy: Callable[[], str | None] | None = None
    #: set with ``local_copy``: removes that copy now, not when the job ends (the sink holds
    #: the layer for good, ``SinkCapabilities.keeps_layers``), so its disk space and memory
    #: (page cache) are free for the layers still being written
    drop_local_copy: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.compression is None:
            self.compression = layer_compression(self.media_type)

    def open(self) -> AbstractContextManager[BinaryIO]:
        return self.opener()

    @property
    def stored_digest(self) -> Digest | None:
        """The digest of the stored bytes, when the source knows it."""
        return self.descriptor.digest if self.descriptor is not None else None

    @property
    def stored_size(self) -> int | None:
        """The size of the stored bytes, when the source knows it."""
        return self.descriptor.size if self.descriptor is not None else None

    @property
    def label(self) -> str:
        if self.descriptor is not None:
            return str(self.descriptor.digest)
        if self.diff_id is not None:
            return str(self.diff_id)
        return f"layer {self.index}"


@dataclass(eq=False)
class Image:
    """One single-platform image from a source.

    ``name`` is the repository as the source knows it (``host/ns/app``, ``lab/app``) and
    ``tag`` its tag, both None when unknown. ``manifest`` is the source's original manifest
    when there is one (registries, layouts, Docker 25+ saves); copies that change nothing
    reuse its exact bytes. ``sequential`` means layers must be opened in order, one at a
    time (streams such as a daemon export or a pipe). ``open_manifest``, when the source can,
    opens another manifest of the same source by its descriptor (an entry of ``index``) as an
    Image; ``copy_index`` uses it to copy every platform.
    """

    name: str | None
    tag: str | None
    config: ImageConfig
    layers: tuple[Layer, ...]
    manifest: Manifest | None = None
    index: Index | None = None
    platform: Platform | None = None
    sequential: bool = False
    source_label: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    open_manifest: Callable[[Descriptor], AbstractContextManager[Image]] | None = None

    @property
    def reference(self) -> str:
        if self.name is None:
            return self.source_label or "image"
        return f"{self.name}:{self.tag}" if self.tag else self.name
