"""``ocidir://PATH[:REF]``: one image from an OCI image layout, every blob verified as it streams.

The manifest is chosen by ref name (``org.opencontainers.image.ref.name``, or containerd's
full ``io.containerd.image.name``), by ``?index=N``, or as the only image of ``index.json``.
Nested indexes are followed (platform from ``?platform=``, else the run's platform, else
linux/amd64) up to :data:`MAX_DEPTH` levels. Manifest, config and layer bytes are checked
against their descriptors (size first, then digest); layers are opened lazily and may be read
in parallel (``sequential=False``). ``Image.manifest`` keeps the stored bytes, so a copy that
changes nothing reproduces the same manifest digest.
"""

from __future__ import annotations

import logging
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
from ..options import OciDirSourceOptions
from .layout import (
    CONTAINERD_NAME,
    INDEX_FILE,
    MAX_INDEX_BYTES,
    REF_NAME,
    blob_path,
    check_layout_file,
    load_index_json,
    ref_names,
    split_source_target,
)

log = logging.getLogger(__name__)

#: How many image indexes may be nested below index.json.
MAX_DEPTH = 8


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
        manifest, index = self._resolve(top, wanted)
        config = ImageConfig.parse(self.read_small_blob(manifest.config, "image config"))
        if explicit is not None and index is None:  # a plain manifest must still fit
            actual = top.platform or (config.platform if "architecture" in config.obj else None)
            if actual is not None and not explicit.matches(actual):
                raise PlatformNotFound(str(explicit), [str(actual)])
        name, tag = _name_and_tag(top, ref)
        label = f"ocidir://{self.root}" + (f":{ref}" if ref else "")
        return Image(
            name=name,
            tag=tag,
            config=config,
            layers=self._layers(manifest, config),
            manifest=manifest,
            index=index,
            platform=_platform_of(top, manifest, index, config),
            sequential=False,
            source_label=label,
            annotations=dict(top.annotations or {}),
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
                d for d, e in zip(descs, entries, strict=True) if _answers_to(ref, ref_names(e))
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
            return Index(b"", MediaType.OCI_INDEX, tuple(found)).select(wanted)
        raise InvalidReference(
            f"{what} names {len(found)} different images; pick one with ?index=N"
        )

    def _resolve(self, top: Descriptor, wanted: Platform) -> tuple[Manifest, Index | None]:
        """Follow indexes from ``top`` down to an image manifest."""
        desc, index, seen = top, None, set()
        for _ in range(MAX_DEPTH + 1):
            if desc.digest in seen:
                raise LimitExceeded(f"index loop at {desc.digest} in {self.root}")
            seen.add(desc.digest)
            parsed = parse(
                self.read_small_blob(desc, "manifest"), desc.media_type, f"manifest {desc.digest}"
            )
            if isinstance(parsed, Manifest):
                return parsed, index
            index = parsed
            desc = parsed.select(wanted)
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


def _answers_to(ref: str, names: Sequence[str]) -> bool:
    """A ref matches a ref name or containerd name exactly, or a docker.io short form of it."""
    for name in names:
        if ref == name:
            return True
        for prefix in ("docker.io/library/", "docker.io/"):
            if name.startswith(prefix) and name[len(prefix) :] == ref:
                return True
    return False


def _name_and_tag(top: Descriptor, ref: str | None) -> tuple[str | None, str | None]:
    """Repository and tag: from containerd's full name, a full ref name, or the ref alone."""
    ann = top.annotations or {}
    for full in (ann.get(CONTAINERD_NAME), ann.get(REF_NAME)):
        if full and "/" in full:
            return _split_reference(full)
    ref_name = ann.get(REF_NAME)
    return None, ref_name or ref


def _split_reference(full: str) -> tuple[str | None, str | None]:
    base = full.split("@", 1)[0]
    slash = base.rfind("/")
    colon = base.rfind(":")
    if colon > slash:
        return base[:colon], base[colon + 1 :]
    return base, None


def _platform_of(
    top: Descriptor, manifest: Manifest, index: Index | None, config: ImageConfig
) -> Platform:
    if index is not None:
        for d in index.manifests:
            if d.digest == manifest.digest and d.platform is not None:
                return d.platform
    if top.platform is not None and top.digest == manifest.digest:
        return top.platform
    return config.platform
