"""What every transport provides: how to open a source, how to write to a sink.

Write order is a contract for every :class:`Sink`. The copy engine (``occystrap.copy``)
calls, for one image::

    begin(image)
    has_layer(...) / put_layer(...)   for each layer (in index order when ``ordered``;
                                      a MountingSink's ``mount_layer`` is asked first)
    put_config(config)                after every layer is written
    put_manifest(manifest)            after the config
    commit()                          makes the result visible, atomically where possible
    abort()                           instead of commit on any error: removes what was half written

A sink never exposes a complete-looking result before ``commit``.

A sink with ``capabilities.holds_index`` (an :class:`IndexSink`) can also store an image
index. ``copy_index`` (``--all-platforms``) then runs the sequence above for every entry of
the index *without* ``commit`` in between (``begin`` is called once per image), then::

    put_index(index)                  after the manifests it lists (nested indexes first)
    commit()                          names the last index put (the top one)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from ..events import NullReporter, Reporter, Stats
from ..image import Image, Layer
from ..model.config import ImageConfig
from ..model.descriptor import Descriptor, Platform
from ..model.digest import Digest
from ..model.manifest import Index, Manifest

if TYPE_CHECKING:
    from ..cache.store import LayerCache


class LayerForm(StrEnum):
    STORED = "stored"  # blobs as the source stores them (compressed); registry, ocidir
    UNCOMPRESSED = "uncompressed"  # plain tar streams; tarball, dir, bundle


@dataclass(frozen=True)
class SinkCapabilities:
    layer_form: LayerForm
    #: put_layer must be called in index order, one at a time.
    ordered: bool = False
    #: put_layer may be called from several threads at once.
    thread_safe: bool = False
    #: for STORED sinks: compress layers that arrive uncompressed (docker-save sources).
    compress_uncompressed: bool = True
    #: manifest family when a manifest must be built and the source had none: 'oci' or 'docker'.
    default_family: str = "oci"
    #: the sink can store an image index: it is an IndexSink (``put_index``).
    holds_index: bool = False
    #: layers go into one output stream; one that arrives before its turn is spooled.
    writes_one_stream: bool = False
    #: has_layer only answers (changes nothing), so it may be asked ahead of a layer's turn.
    has_layer_is_query: bool = True
    #: the sink is an AdoptingSink: it can take a source's verified local copy of a stored
    #: blob (``Layer.local_copy``) by hard link rather than have the bytes written again.
    adopts_local_copies: bool = False
    #: the sink is a MountingSink: it can hold a stored blob that another repository of
    #: the same registry has (``Layer.origin``) by reference, a cross-repository mount,
    #: without reading the layer.
    mounts_layers: bool = False
    #: a layer is stored for good once put_layer returns, even if the run fails later, and
    #: a rerun finds it (``has_layer``): nothing need be kept of its source bytes for a
    #: rerun (``Layer.drop_local_copy``).
    keeps_layers: bool = False


@dataclass(frozen=True)
class RegistrySettings:
    """Options for talking to registries, set once per run (CLI flags / env)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_verify: bool = True
    ca_file: str | None = None
    cert_dir: str | None = None
    insecure_hosts: tuple[str, ...] = ()
    retries: int = 5
    timeout: float = 60.0
    partial_dir: str | None = None
    #: where pushes remember which repositories hold each blob ("off": nowhere)
    locations_dir: str | None = None


@dataclass(frozen=True)
class RunContext:
    """Settings of one run that sources, filters and sinks may consult."""

    temp_dir: str | None = None
    jobs: int = 4
    platform: Platform | None = None
    all_platforms: bool = False
    compression: str = "gzip"
    compression_level: int | None = None
    registry: RegistrySettings = RegistrySettings()
    reporter: Reporter = field(default_factory=NullReporter)
    stats: Stats = field(default_factory=Stats)
    #: the persistent layer cache (``--cache-dir``); None: no cache
    layer_cache: LayerCache | None = None


class BlobStream(Protocol):
    """The bytes handed to a sink: read to EOF, then ``digest()`` and ``size`` are final.

    When the engine knows what the bytes must be, it verifies them while they stream:
    a mismatch raises IntegrityError from ``read`` before EOF is reported.
    """

    size: int

    def read(self, n: int = -1, /) -> bytes: ...

    def digest(self) -> Digest: ...


@dataclass(frozen=True)
class LayerWrite:
    """What a sink is told about the layer bytes it is about to receive."""

    index: int
    media_type: str
    #: expected digest / size of the bytes being written, when known up front
    digest: Digest | None
    size: int | None
    #: the uncompressed digest, when known up front
    diff_id: Digest | None
    source: Layer


class Sink(Protocol):
    capabilities: SinkCapabilities

    def begin(self, image: Image) -> None: ...

    def has_layer(self, digest: Digest) -> Descriptor | None:
        """The stored descriptor when the sink already holds this blob (skip the copy)."""

    def put_layer(self, blob: BlobStream, info: LayerWrite) -> Descriptor: ...

    def put_config(self, config: ImageConfig) -> Descriptor: ...

    def put_manifest(self, manifest: Manifest) -> None: ...

    def commit(self) -> str:
        """Make the result visible; return a one-line description of what was written."""

    def abort(self) -> None: ...


class IndexSink(Sink, Protocol):
    def put_index(self, index: Index) -> None:
        """Store ``index`` (exact bytes); every manifest it lists was put before."""


class AdoptingSink(Sink, Protocol):
    def adopt_layer(self, path: str, info: LayerWrite) -> Descriptor | None:
        """Store the file ``path``, the complete stored blob ``info`` describes (digest and
        size given), verified by its source just before, by hard-linking it; None when it
        cannot be linked (the engine then streams the layer as usual)."""


class MountingSink(Sink, Protocol):
    def mount_layer(self, info: LayerWrite) -> Descriptor | None:
        """Hold the stored blob ``info`` describes (digest and size given) by reference to
        where its source keeps it (``info.source.origin``), without its bytes; None when it
        cannot (the engine then asks ``has_layer`` and copies the layer as usual)."""


SourceOpener = Callable[[str, Any, RunContext], AbstractContextManager[Image]]
SinkOpener = Callable[[str, Any, RunContext], Sink]


@dataclass(frozen=True)
class Transport:
    """A URI scheme and what it can do. Option classes and factories are named
    (``module:name``) and imported when a run uses them, so a run loads only its own
    transports' modules."""

    scheme: str
    summary: str
    aliases: tuple[str, ...] = ()
    source_options: str | None = None
    sink_options: str | None = None
    source_factory: str | None = None
    sink_factory: str | None = None
    #: called with (target, options, ctx) as soon as an endpoint is parsed, before the
    #: factories' modules load, to start slow set-up early (``module:function``); it may
    #: return a callable that drops what the run did not use
    prepare: str | None = None
    source_example: str | None = None
    sink_example: str | None = None

    def options_class(self, role: Literal["source", "sink"]) -> type[Any] | None:
        """The frozen dataclass of this transport's options as a source or a sink; None when
        the transport cannot play that role."""
        name = self.source_options if role == "source" else self.sink_options
        return None if name is None else cast("type[Any]", load(name))


def load(name: str) -> Any:
    """The object a ``module:name`` string names, importing its module."""
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)
