"""``ocidir://PATH[:REF]``: one image from an OCI image layout, every blob verified as it streams.

The manifest is chosen by ref name (``org.opencontainers.image.ref.name``, or containerd's
full ``io.containerd.image.name``), by ``?index=N``, or as the only image of ``index.json``.
Nested indexes are followed (platform from ``?platform=``, else the run's platform, else
linux/amd64) up to :data:`MAX_DEPTH` levels; with ``--all-platforms`` an index without that
platform yields its first entry instead (``copy_index`` visits every entry anyway).
Manifest, config and layer bytes are checked against their descriptors (size first, then
digest); layers are opened lazily and may be read in parallel (``sequential=False``).
``Image.manifest`` keeps the stored bytes, so a copy that changes nothing reproduces the same
manifest digest; ``Image.index`` is the index the chosen ``index.json`` entry names, when it
names one. ``Image.open_manifest`` opens any blob of the layout by descriptor (an index entry,
attestation manifests included) as an Image.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from ...blobio.verify import VerifyingReader
from ...errors import (
    BlobNotFound,
    ImageNotFound,
    InvalidOption,
    InvalidReference,
    LimitExceeded,
    MalformedInput,
    PlatformNotFound,
    SizeMismatch,
    UnsupportedFormat,
)
from ...image import Image, Layer
from ...model.config import ImageConfig
from ...model.descriptor import DEFAULT_PLATFORM, Descriptor, Platform
from ...model.manifest import Index, Manifest, parse
from ...model.media_types import MediaType
from ..base import RunContext
from .layout import (
    INDEX_FILE,
    MAX_INDEX_BYTES,
    answers_to,
    blob_path,
    check_layout_file,
    load_index_json,
    name_and_tag,
    ref_names,
    split_source_target,
)
from .options import OciDirSourceOptions

#: How many image indexes may be nested below index.json.
MAX_DEPTH = 8

#: An image's repository, tag and source label, shared by the images of one index.
_Names = tuple[str | None, str | None, str]


@contextmanager
def open_source(target: str, options: OciDirSourceOptions, ctx: RunContext) -> Iterator[Image]:
    """Open ``PATH[:REF]`` as an :class:`Image`; nothing is held open between layer reads."""
    root, ref = split_source_target(target)
    yield OciLayoutReader(root, ctx).image(ref, options)


class OciLayoutReader:
    """Reads descriptors, manifests and blobs of the layout at ``root``."""

    def __init__(self, root: str, ctx: RunContext) -> None:
        self.root = root
        self.ctx = ctx

    def image(self, ref: str | None, options: OciDirSourceOptions) -> Image:
        check_layout_file(self.root)
        _, index_obj = load_index_json(self.root)
        where = os.path.join(self.root, INDEX_FILE)
        entries: list[Any] = index_obj["manifests"]
        descs = [Descriptor.from_json(e, f"{where} entry {i}") for i, e in enumerate(entries)]
        explicit = Platform.parse(options.platform) if options.platform else self.ctx.platform
        wanted = explicit or DEFAULT_PLATFORM
        top = self._choose(descs, entries, ref, options.index, wanted)
        manifest, index, entry = self._resolve(top, wanted, self.ctx.all_platforms)
        label = f"ocidir://{self.root}" + (f":{ref}" if ref else "")
        image = self._image(manifest, index, entry, (*name_and_tag(top, ref), label), top)
        if explicit is not None and index is None:  # a plain manifest must still fit
            config = image.config
            actual = top.platform or (config.platform if "architecture" in config.obj else None)
            if actual is not None and not explicit.matches(actual):
                raise PlatformNotFound(str(explicit), [str(actual)], single=True)
        return image

    def open_manifest(self, desc: Descriptor, names: _Names) -> Image:
        """The image ``desc`` names; for an index, its image for the run's platform, else
        its first (``Image.index`` is then that index)."""
        wanted = self.ctx.platform or DEFAULT_PLATFORM
        manifest, index, entry = self._resolve(desc, wanted, any_entry=True)
        return self._image(manifest, index, entry, names, desc)

    def _image(
        self,
        manifest: Manifest,
        index: Index | None,
        entry: Descriptor,
        names: _Names,
        top: Descriptor,
    ) -> Image:
        """``names``: repository, tag and label; ``top``: the descriptor that was asked for."""
        config = ImageConfig.parse(self.read_small_blob(manifest.config, "image config"))

        @contextmanager
        def open_manifest(desc: Descriptor) -> Iterator[Image]:
            yield self.open_manifest(desc, names)

        return Image(
            name=names[0],
            tag=names[1],
            config=config,
            layers=self._layers(manifest, config),
            manifest=manifest,
            index=index,
            platform=entry.platform or config.platform,
            sequential=False,
            source_label=names[2],
            annotations=dict(top.annotations or {}),
            open_manifest=open_manifest,
        )

    # -- choosing the manifest ----------------------------------------------------------------

    def _choose(
        self,
        descs: Sequence[Descriptor],
        entries: Sequence[Any],
        ref: str | None,
        position: int | None,
        wanted: Platform,
    ) -> Descriptor:
        where = os.path.join(self.root, INDEX_FILE)
        if position is not None:
            if ref is not None:
                raise InvalidOption(
                    f"give either PATH:REF or ?index=N, not both ({ref!r}, {position})"
                )
            if not 0 <= position < len(descs):
                raise ImageNotFound(
                    f"{where} has {len(descs)} entries; index={position} is out of range"
                )
            return descs[position]
        available = sorted({n for e in entries for n in ref_names(e)})
        if ref is not None:
            found = [
                d for d, e in zip(descs, entries, strict=True) if answers_to(ref, ref_names(e))
            ]
            if not found:
                offered = ", ".join(available) if available else "none (use ?index=N)"
                raise ImageNotFound(f"no image {ref!r} in {self.root}; its refs are: {offered}")
            return self._pick(found, wanted, f"ref {ref!r} in {self.root}")
        if not descs:
            raise ImageNotFound(f"{self.root} holds no images ({where} lists none)")
        if len(descs) == 1:
            return descs[0]
        if len({d.ref_name for d in descs}) > 1:
            raise ImageNotFound(
                f"{self.root} holds {len(descs)} images; name one as PATH:REF "
                f"(refs: {', '.join(available)}) or use ?index=N"
            )
        return self._pick(descs, wanted, str(self.root))

    def _pick(self, found: Sequence[Descriptor], wanted: Platform, what: str) -> Descriptor:
        """One of several entries: the same manifest, or the one for ``wanted``'s platform."""
        if len({d.digest for d in found}) == 1:
            return found[0]
        if all(d.platform is not None for d in found):
            return _select(
                Index(b"", MediaType.OCI_INDEX, tuple(found)), wanted, self.ctx.all_platforms
            )
        raise InvalidReference(
            f"{what} names {len(found)} different images; pick one with ?index=N"
        )

    def _resolve(
        self, top: Descriptor, wanted: Platform, any_entry: bool
    ) -> tuple[Manifest, Index | None, Descriptor]:
        """Follow indexes from ``top`` down to an image manifest: that manifest, the index
        ``top`` names (None for a plain manifest) and the descriptor that led to the manifest.
        ``any_entry``: an index without ``wanted`` yields its first entry."""
        desc, first, seen = top, None, set()
        for _ in range(MAX_DEPTH + 1):
            if desc.digest in seen:
                raise LimitExceeded(f"index loop at {desc.digest} in {self.root}")
            seen.add(desc.digest)
            parsed = parse(
                self.read_small_blob(desc, "manifest"), desc.media_type, f"manifest {desc.digest}"
            )
            if isinstance(parsed, Manifest):
                return parsed, first, desc
            first = parsed if first is None else first
            desc = _select(parsed, wanted, any_entry)
        raise LimitExceeded(f"indexes nested deeper than {MAX_DEPTH} levels in {self.root}")

    # -- blobs --------------------------------------------------------------------------------

    def read_small_blob(self, desc: Descriptor, what: str) -> bytes:
        """A manifest, index or config: verified, size-capped, read whole."""
        if desc.size > MAX_INDEX_BYTES:
            raise LimitExceeded(
                f"{what} {desc.digest} is {desc.size} bytes, over the {MAX_INDEX_BYTES}-byte limit"
            )
        with self.open_blob(desc, what) as reader:
            data = reader.read()
            reader.finish()
        return data

    @contextmanager
    def open_blob(self, desc: Descriptor, what: str) -> Iterator[VerifyingReader]:
        """``blobs/<alg>/<hex>`` checked against ``desc``: size from the file system, then
        size and digest as the bytes stream (a mismatch raises before EOF is reported)."""
        path = blob_path(self.root, desc.digest)
        label = f"{what} {desc.digest}"
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            hint = " (non-distributable; it lives at its urls)" if desc.urls else ""
            raise BlobNotFound(f"{label} is missing from {self.root}{hint}") from None
        except OSError as e:
            raise MalformedInput(f"cannot read {label} in {self.root}: {e.strerror}") from None
        try:
            size = os.fstat(f.fileno()).st_size
            if size != desc.size:
                raise SizeMismatch(label, desc.size, size)
            try:
                reader = VerifyingReader(f, desc, label)
            except InvalidReference:
                raise UnsupportedFormat(f"{label} uses an unsupported digest algorithm") from None
            yield reader
        finally:
            f.close()

    def _layers(self, manifest: Manifest, config: ImageConfig) -> tuple[Layer, ...]:
        diff_ids = config.diff_ids
        if diff_ids and len(diff_ids) != len(manifest.layers):
            raise MalformedInput(
                f"manifest {manifest.digest} has {len(manifest.layers)} layers but its config lists "
                f"{len(diff_ids)} diff_ids"
            )
        history = config.layer_history()
        layers = []
        for i, desc in enumerate(manifest.layers):
            layers.append(
                Layer(
                    index=i,
                    media_type=desc.media_type,
                    descriptor=desc,
                    diff_id=diff_ids[i] if diff_ids else None,
                    opener=self._opener(desc, i),
                    history=history[i] if i < len(history) else None,
                )
            )
        return tuple(layers)

    def _opener(self, desc: Descriptor, i: int) -> Any:
        @contextmanager
        def opener() -> Iterator[BinaryIO]:
            with self.open_blob(desc, f"layer {i}") as reader:
                try:
                    yield cast(BinaryIO, reader)
                finally:
                    self.ctx.stats.add(bytes_read=reader.size)

        return opener


def _select(index: Index, wanted: Platform, any_entry: bool) -> Descriptor:
    """``index``'s entry for ``wanted``; with ``any_entry``, its first when none fits."""
    try:
        return index.select(wanted)
    except PlatformNotFound:
        if any_entry and index.manifests:
            return index.manifests[0]
        raise
