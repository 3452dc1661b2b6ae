"""What a docker-save archive holds: the picked image's config and layers (a :class:`Plan`).

The same planning serves a seekable file (every member known up front) and a one-pass
stream (members known so far; :class:`NeedMore` asks the caller to read on). Archives of
every era are read through ``manifest.json``; an OCI layout next to it (Docker 25+,
containerd store) contributes the original OCI manifest; an archive with only an OCI layout
is read as an oci-archive; one with only ``repositories`` is pre-1.10 and refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...blobio.compression import detect
from ...errors import (
    DigestMismatch,
    ImageNotFound,
    InvalidOption,
    MalformedInput,
    UnsupportedFormat,
)
from ...image import Image, Layer, Opener
from ...model.config import ImageConfig
from ...model.descriptor import Descriptor
from ...model.digest import Digest
from ...model.manifest import Manifest
from ...model.media_types import MediaType, layer_compression
from .layout import blob_path, find_oci_manifest, walk_index
from .manifest_json import choose, parse_manifest_json, split_repo_tag, tag_matches
from .members import Contents, Member, NeedMore

log = logging.getLogger(__name__)


@dataclass
class LayerRef:
    """One layer of the picked image as the archive stores it.

    ``paths`` are the member names that may hold it (usually one, from manifest.json).
    ``compression`` is what the plan promises; ``digest``/``size`` describe the stored
    bytes when known (for an uncompressed layer the digest is the diff_id).
    """

    index: int
    paths: tuple[str, ...]
    diff_id: Digest | None
    media_type: str
    compression: str | None
    digest: Digest | None
    size: int | None
    history: dict[str, Any] | None = None
    descriptor: Descriptor | None = None
    #: a held member whose digest equals the diff_id is this layer (daemon pre-knowledge)
    match_content: bool = False


@dataclass
class Plan:
    """The picked image: RepoTag split into ``name``/``tag``, its config, its layers, the
    layout's original manifest if any; ``count`` images in the archive, of which this one
    (``entry_label``) was taken for want of ``image=``/``index=`` if ``picked_by_default``."""

    name: str | None
    tag: str | None
    config: ImageConfig
    layers: list[LayerRef]
    manifest: Manifest | None
    count: int = 1
    picked_by_default: bool = False
    entry_label: str = ""


def need(view: Contents, path: str, what: str) -> Member:
    member = view.resolve(path, what)
    if member is None:
        if not view.complete:
            raise NeedMore(path)
        raise MalformedInput(f"{what} {path!r} is missing from {view.what}")
    return member


def load_config(view: Contents, path: str, expected: Digest | None = None) -> ImageConfig:
    member = need(view, path, "config")
    raw = view.read_small(member, f"config {path!r} of {view.what}")
    config = ImageConfig.parse(raw, f"config {path!r} of {view.what}")
    expected = expected or digest_from_name(path)
    if (
        expected is not None
        and expected.supported
        and Digest.of_bytes(raw, expected.algorithm) != expected
    ):
        raise DigestMismatch(
            f"config {path!r} of {view.what}", str(expected), str(Digest.of_bytes(raw))
        )
    return config


def digest_from_name(path: str) -> Digest | None:
    """``blobs/sha256/<hex>``, ``<hex>.json`` or ``<hex>.tar`` name their content's digest."""
    parts = path.strip("/").split("/")
    try:
        if len(parts) >= 3 and parts[-3] == "blobs":
            return Digest.parse(f"{parts[-2]}:{parts[-1]}")
        stem, dot, ext = parts[-1].rpartition(".")
        if len(parts) == 1 and dot and ext in ("json", "tar") and len(stem) == 64:
            return Digest.sha256_hex(stem)
    except ValueError:
        return None
    return None


def build_plan(view: Contents, image: str | None, index: int | None) -> Plan:
    """The plan for the image picked by ``image`` (a RepoTag) or ``index`` (else the first)."""
    mj = view.resolve("manifest.json", "manifest.json")
    if mj is None:
        if not view.complete:
            raise NeedMore("manifest.json")
        if view.resolve("index.json", "index.json") is not None:
            return plan_oci_archive(view, image, index)
        if view.resolve("repositories", "repositories") is not None:
            raise UnsupportedFormat(
                f"{view.what} is a pre-1.10 docker save archive (no manifest.json); "
                "load it into Docker and save it again with Docker >= 1.10"
            )
        raise MalformedInput(f"{view.what} is not a docker save archive (no manifest.json)")
    entries = parse_manifest_json(view.read_small(mj, f"manifest.json of {view.what}"), view.what)
    choice = choose(entries, image, index, view.what)
    entry = choice.entry
    config = load_config(view, entry.config)
    diff_ids = config.diff_ids
    if len(diff_ids) != len(entry.layers):
        raise MalformedInput(
            f"manifest.json of {view.what} lists {len(entry.layers)} layers "
            f"but the config has {len(diff_ids)} diff_ids"
        )
    found = find_oci_manifest(view, config.digest, entry.layers)
    manifest, oci_name = found if found is not None else (None, None)
    history = config.layer_history()
    layers = [
        layer_ref(view, i, path, diff_ids[i], history[i], manifest.layers[i] if manifest else None)
        for i, path in enumerate(entry.layers)
    ]
    name, tag = split_repo_tag(choice.repo_tag) if choice.repo_tag else (oci_name, None)
    if choice.repo_tag is None and oci_name:
        name, tag = split_repo_tag(oci_name)
    return Plan(
        name,
        tag,
        config,
        layers,
        manifest,
        choice.count,
        picked_by_default=image is None and index is None,
        entry_label=entry.label,
    )


def plan_oci_archive(view: Contents, image: str | None, index: int | None) -> Plan:
    """An archive with an OCI layout and no manifest.json (``oci-archive``)."""
    found = walk_index(view)
    if not found:
        raise MalformedInput(
            f"index.json of {view.what} names no image whose blobs are in the archive"
        )
    if image is not None and index is not None:
        raise InvalidOption(f"{view.what}: give either image= or index=, not both")
    pick = found[0]
    if index is not None:
        if not 0 <= index < len(found):
            raise ImageNotFound(
                f"{view.what} holds {len(found)} image(s); index={index} is out of range"
            )
        pick = found[index]
    elif image is not None:
        hits = [f for f in found if f.name and (f.name == image or tag_matches(image, f.name))]
        if not hits:
            known = ", ".join(f.name for f in found if f.name)[:400] or "none"
            raise ImageNotFound(f"{view.what} holds no image named {image!r} (names: {known})")
        pick = hits[0]
    m = pick.manifest
    config = load_config(view, blob_path(m.config.digest), m.config.digest)
    diff_ids = config.diff_ids
    if len(diff_ids) != len(m.layers):
        raise MalformedInput(
            f"manifest {pick.descriptor.digest} of {view.what} does not match its config's diff_ids"
        )
    history = config.layer_history()
    layers = [
        layer_ref(view, i, blob_path(d.digest), diff_ids[i], history[i], d)
        for i, d in enumerate(m.layers)
    ]
    name, tag = (None, None)
    if pick.name and ("/" in pick.name or ":" in pick.name):
        name, tag = split_repo_tag(pick.name)
    elif pick.name:
        tag = pick.name
    return Plan(
        name,
        tag,
        config,
        layers,
        m,
        len(found),
        picked_by_default=image is None and index is None,
        entry_label=pick.name or str(pick.descriptor.digest),
    )


def layer_ref(
    view: Contents,
    i: int,
    path: str,
    diff_id: Digest,
    history: dict[str, Any] | None,
    desc: Descriptor | None,
) -> LayerRef:
    member = view.resolve(path, f"layer {i}")
    if member is None and view.complete:
        raise MalformedInput(
            f"layer {i} {path!r} named by manifest.json is missing from {view.what}"
        )
    if desc is not None:
        if member is not None and member.size != desc.size:
            raise MalformedInput(
                f"layer {i} {path!r} of {view.what} is {member.size} bytes, its descriptor says {desc.size}"
            )
        comp = layer_compression(desc.media_type)
        return LayerRef(
            i, (path,), diff_id, desc.media_type, comp, desc.digest, desc.size, history, desc
        )
    head = view.head(member) if member is not None else None
    named = digest_from_name(path)
    if head is not None:
        comp = str(detect(head))
    elif named is not None and named != diff_id:
        comp = "gzip"  # a stored blob that is not the plain tar: compressed, not yet seen
    else:
        comp = "none"
    size = member.size if member is not None else None
    if comp == "none":
        digest: Digest | None = diff_id
    else:
        digest = named or (view.digest(member) if member is not None else None)
    media_type = {"none": MediaType.DOCKER_LAYER, "gzip": MediaType.DOCKER_LAYER_GZIP}.get(
        comp, MediaType.OCI_LAYER_ZSTD
    )
    descriptor = (
        Descriptor(media_type, digest, size) if digest is not None and size is not None else None
    )
    return LayerRef(i, (path,), diff_id, media_type, comp, digest, size, history, descriptor)


def image_from_plan(
    plan: Plan, opener: Callable[[LayerRef], Opener], label: str, sequential: bool
) -> Image:
    layers = tuple(
        Layer(
            index=ref.index,
            media_type=ref.media_type,
            descriptor=ref.descriptor,
            diff_id=ref.diff_id,
            opener=opener(ref),
            compression=ref.compression,
            history=ref.history,
        )
        for ref in plan.layers
    )
    return Image(
        name=plan.name,
        tag=plan.tag,
        config=plan.config,
        layers=layers,
        manifest=plan.manifest,
        platform=plan.config.platform,
        sequential=sequential,
        source_label=label,
    )
