"""The Filter protocol: what a filter may do to an image passing through.

A filter sees each layer as a stream of tar entries (``process``), the image config
(``edit_config``) and the manifest's annotations (``edit_annotations``). Filters are applied in command-line order: the first ``-f`` sees the
source's entries, and hands what it yields to the next. Filters never touch digests:
the copy engine recomputes every diff_id, digest, size, config and manifest from what
is actually written, so a filter cannot leave a stale config behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: a copy without filters need not load the tar modules
    from ..events import Reporter
    from ..model.config import ImageConfig
    from ..model.digest import Digest
    from ..tario.entry import TarEntry


@dataclass
class SourceEnd:
    """How the source's layer tar ended, filled in by the engine when the source's entries
    run out (so a filter may read it once its own input is exhausted, never before)."""

    #: members read from the source, global headers included
    entries: int | None = None
    #: bytes from the end-of-archive marker to the end of the stream (0: no marker)
    trailer: int | None = None


@dataclass(frozen=True)
class LayerView:
    """What a filter knows about the layer whose entries it is processing."""

    index: int
    count: int
    #: the source's stored digest and the source config's diff_id for this layer
    digest: Digest | None
    diff_id: Digest | None
    size: int | None
    media_type: str
    created_by: str | None
    source_end: SourceEnd = field(default_factory=SourceEnd)
    #: where the run keeps temporary files (``--temp-dir``; None: the system default)
    temp_dir: str | None = None


@dataclass(frozen=True)
class HeaderEdit:
    """What a filter does to a simple member (one USTAR or plain GNU header block, no
    extended header, no PAX global header before it), declared so the engine may apply it
    to such members as bytes, without making entries of them: set the mtime to ``mtime``.

    A filter declaring one must map each entry it is given to exactly one entry, yielded
    before it takes the next, and must treat a simple member just as the edit says.
    """

    mtime: int


@dataclass(frozen=True)
class ImageView:
    """The image as written, given to ``finish``."""

    reference: str
    manifest_digest: Digest | None
    config: ImageConfig
    layers: tuple[dict[str, Any], ...]  # {"digest","diff_id","size","media_type"} per layer


class Filter(Protocol):
    #: the name used on the command line (``-f NAME:...``)
    name: str
    #: True when the filter may change layer content (entries, headers)
    rewrites_layers: bool
    #: True when the filter must see entries even though it changes nothing
    observes_layers: bool
    #: what the filter does to a simple member, when that can be done to its bytes
    header_edit: HeaderEdit | None

    def edit_config(self, config: ImageConfig) -> ImageConfig:
        """Return the config to write (before diff_ids are recomputed by the engine)."""

    def edit_annotations(self, annotations: dict[str, str]) -> dict[str, str]:
        """Return the annotations of the manifest to write (called only when the source's
        manifest has some). A copy that changes them gets a new manifest."""

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        """Yield the entries of ``layer`` as they should continue down the chain.

        An entry passed on unchanged keeps ``raw_header``; a changed one must set it to None.
        Bodies must be passed on or left unread (the reader skips them); never buffered whole.
        """

    def finish(self, image: ImageView, reporter: Reporter) -> None:
        """Called once per image after the sink committed (reports, inspect output)."""


class PassThrough:
    """Base with no-op defaults; subclasses override what they need."""

    name = "passthrough"
    rewrites_layers = False
    observes_layers = False
    header_edit: HeaderEdit | None = None

    def edit_config(self, config: ImageConfig) -> ImageConfig:
        return config

    def edit_annotations(self, annotations: dict[str, str]) -> dict[str, str]:
        return annotations

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        return entries

    def finish(self, image: ImageView, reporter: Reporter) -> None:
        return None
