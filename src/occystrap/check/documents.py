"""Structural checks of an image's JSON documents: descriptors, indexes and manifests.

The rules of the OCI image-spec (descriptor.md, image-index.md, manifest.md, config.md) and
Docker's manifest v2 schema 2 are written here in code (the library does not read the JSON
schemas; the tests cross-check these functions against them). Each function adds results to
a :class:`Report` and returns what later checks need, or None when the document is too
broken to go on. Image configs are checked in :mod:`.configdoc`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidReference, LimitExceeded, MalformedInput
from ..model.descriptor import Descriptor, Platform
from ..model.digest import Digest
from ..model.jsonfile import load_object
from ..model.media_types import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MediaType,
    is_nondistributable,
    layer_compression,
)
from .report import Report

_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)
OCI_LAYERS = {
    MediaType.OCI_LAYER,
    MediaType.OCI_LAYER_GZIP,
    MediaType.OCI_LAYER_ZSTD,
    MediaType.OCI_LAYER_ND,
    MediaType.OCI_LAYER_ND_GZIP,
    MediaType.OCI_LAYER_ND_ZSTD,
}
DOCKER_LAYERS = {
    MediaType.DOCKER_LAYER,
    MediaType.DOCKER_LAYER_GZIP,
    MediaType.DOCKER_FOREIGN_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar.zstd",  # containerd's invention
}
CONFIG_TYPES: dict[str, str] = {MediaType.OCI_CONFIG: "oci", MediaType.DOCKER_CONFIG: "docker"}


def parse_json(raw: bytes, what: str, report: Report) -> dict[str, Any] | None:
    """``raw`` as a JSON object, or None after a ``json-invalid`` error."""
    try:
        return load_object(raw, what)
    except (MalformedInput, LimitExceeded) as e:
        report.add("json-invalid", str(e))
        return None


def is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_platform(obj: Any, what: str, report: Report) -> Platform | None:
    if not isinstance(obj, dict):
        report.add("platform", f"{what}: platform is not an object")
        return None
    bad = [k for k in ("os", "architecture") if not isinstance(obj.get(k), str) or not obj[k]]
    if bad:
        report.add("platform", f"{what}: platform has no {' or '.join(bad)}")
        return None
    for key in ("variant", "os.version"):
        if key in obj and not isinstance(obj[key], str):
            report.add("platform", f"{what}: platform {key} is not a string")
    if "os.features" in obj and not is_str_list(obj["os.features"]):
        report.add("platform", f"{what}: platform os.features is not a list of strings")
    variant, version = obj.get("variant"), obj.get("os.version")
    return Platform(
        obj["os"],
        obj["architecture"],
        variant if isinstance(variant, str) else "",
        version if isinstance(version, str) else "",
    )


def check_descriptor(obj: Any, what: str, report: Report) -> Descriptor | None:
    """A descriptor per descriptor.md; None when it cannot be followed."""
    if not isinstance(obj, dict):
        report.add("descriptor", f"{what} is not a JSON object")
        return None
    usable = True
    media_type = obj.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        report.add("descriptor", f"{what} has no mediaType")
        usable = False
    elif not _MEDIA_TYPE.match(media_type):
        report.add("descriptor", f"{what} has a malformed mediaType {media_type[:80]!r}")
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        report.add("descriptor", f"{what} has a bad size {str(size)[:40]!r}")
        usable = False
    digest = None
    try:
        digest = Digest.parse(obj.get("digest"))  # type: ignore[arg-type]
    except InvalidReference as e:
        report.add("descriptor", f"{what}: {e}")
        usable = False
    if digest is not None and not digest.supported:
        report.add(
            "digest-algorithm", f"{what}: digest algorithm {digest.algorithm!r} is not verified"
        )
    urls = obj.get("urls")
    if urls is not None and not is_str_list(urls):
        report.add("descriptor", f"{what} has malformed urls")
        urls = None
    annotations = obj.get("annotations")
    if annotations is not None and not is_str_map(annotations):
        report.add("descriptor", f"{what} has malformed annotations")
        annotations = None
    if "artifactType" in obj and not (
        isinstance(obj["artifactType"], str) and _MEDIA_TYPE.match(obj["artifactType"])
    ):
        report.add("descriptor", f"{what} has a malformed artifactType")
    platform = check_platform(obj["platform"], what, report) if "platform" in obj else None
    if not usable or digest is None:
        return None
    assert isinstance(media_type, str) and isinstance(size, int)
    if "data" in obj:
        _check_data(obj["data"], digest, size, what, report)
    return Descriptor(
        media_type, digest, size, annotations, platform, tuple(urls) if urls else None
    )


def _check_data(data: Any, digest: Digest, size: int, what: str, report: Report) -> None:
    try:
        if not isinstance(data, str):
            raise ValueError
        raw = base64.b64decode(data, validate=True)
    except (ValueError, binascii.Error):
        report.add("descriptor-data", f"{what} has data that is not base64")
        return
    if len(raw) != size:
        report.add("descriptor-data", f"{what}: data is {len(raw)} bytes, size says {size}")
    elif digest.supported and Digest.of_bytes(raw, digest.algorithm) != digest:
        report.add("descriptor-data", f"{what}: data does not match digest {digest}")


def _check_media_type(
    obj: dict[str, Any],
    allowed: tuple[str, ...],
    declared_by: str | None,
    what: str,
    report: Report,
) -> str | None:
    own = obj.get("mediaType")
    if own is None:
        report.add("media-type-missing", f"{what} has no mediaType field")
    elif not isinstance(own, str) or own not in allowed:
        report.add(
            "media-type",
            f"{what} has mediaType {str(own)[:80]!r}, expected one of {', '.join(allowed)}",
        )
        return None
    if declared_by is not None and own is not None and own != declared_by:
        report.add("media-type", f"{what} says it is {own} but its descriptor says {declared_by}")
    return own if isinstance(own, str) else declared_by


def check_schema_version(obj: dict[str, Any], what: str, report: Report) -> None:
    value = obj.get("schemaVersion")
    if value != 2 or isinstance(value, bool):
        report.add("schema-version", f"{what} has schemaVersion {str(value)[:20]!r}, expected 2")


def check_index(
    obj: dict[str, Any], what: str, report: Report, declared: str | None, *, layout: bool
) -> list[Descriptor | None]:
    """An image index (or Docker manifest list); ``layout`` for a layout's index.json."""
    check_schema_version(obj, what, report)
    _check_media_type(obj, tuple(INDEX_TYPES), declared, what, report)
    if "annotations" in obj and not is_str_map(obj["annotations"]):
        report.add("index-schema", f"{what} has malformed annotations")
    entries = obj.get("manifests")
    if not isinstance(entries, list):
        report.add(
            "index-schema", f"{what}: 'manifests' must be a list, not {type(entries).__name__}"
        )
        return []
    descs = [check_descriptor(e, f"{what} entry {i}", report) for i, e in enumerate(entries)]
    images = [d for d in descs if d is not None and d.media_type in MANIFEST_TYPES]
    if not layout and len(images) > 1:
        for i, (entry, d) in enumerate(zip(entries, descs, strict=True)):
            if d is not None and d.media_type in MANIFEST_TYPES and "platform" not in entry:
                report.add("platform-missing", f"{what} entry {i} ({d.digest}) has no platform")
    for i, d in enumerate(descs):
        if d is not None and d.media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
            report.add("artifact", f"{what} entry {i} has media type {d.media_type}; not checked")
    return descs


@dataclass(frozen=True)
class ManifestView:
    """What the rest of the checks need from a manifest."""

    media_type: str
    family: str  # 'oci' or 'docker'
    config: Descriptor | None
    layers: tuple[Descriptor | None, ...]
    is_image: bool  # the config is an image config (not an artifact)


def check_manifest(
    obj: dict[str, Any], what: str, report: Report, declared: str | None, *, detail: bool = True
) -> ManifestView:
    """An image manifest; ``detail`` adds per-layer notes (for the image being checked)."""
    check_schema_version(obj, what, report)
    media_type = _check_media_type(obj, tuple(MANIFEST_TYPES), declared, what, report)
    media_type = media_type or MediaType.OCI_MANIFEST
    family = "docker" if media_type == MediaType.DOCKER_MANIFEST else "oci"
    if detail:
        name = "a Docker schema 2" if family == "docker" else "an OCI image"
        report.add("format", f"{what} is {name} manifest ({media_type})")
    if "annotations" in obj and not is_str_map(obj["annotations"]):
        report.add("manifest-schema", f"{what} has malformed annotations")
    if "subject" in obj:
        check_descriptor(obj["subject"], f"{what} subject", report)
    config = None
    if "config" not in obj:
        report.add("manifest-schema", f"{what} has no config descriptor")
    else:
        config = check_descriptor(obj["config"], f"{what} config descriptor", report)
    is_image = True
    if config is not None:
        kind = CONFIG_TYPES.get(config.media_type)
        if config.media_type == MediaType.OCI_EMPTY and not obj.get("artifactType"):
            report.add("artifact-type", f"{what} has the empty config type but no artifactType")
        if kind is None:
            is_image = False
            report.add(
                "artifact",
                f"{what} has config type {config.media_type}: an artifact, not checked as an image",
            )
        elif kind != family:
            report.add(
                "mixed-media-types",
                f"{what} is a {family} manifest with config type {config.media_type}",
            )
    layers_obj = obj.get("layers")
    if not isinstance(layers_obj, list):
        report.add("manifest-schema", f"{what}: 'layers' must be a list")
        layers_obj = []
    elif not layers_obj:
        report.add("no-layers", f"{what} lists no layers")
    layers = tuple(
        check_descriptor(e, f"{what} layer {i}", report) for i, e in enumerate(layers_obj)
    )
    for i, d in enumerate(layers):
        if d is not None and is_image and detail:
            check_layer_media_type(d.media_type, family, i, report, urls=d.urls)
    return ManifestView(media_type, family, config, layers, is_image)


def check_layer_media_type(
    media_type: str, family: str, index: int, report: Report, urls: tuple[str, ...] | None = None
) -> None:
    known = media_type in OCI_LAYERS or media_type in DOCKER_LAYERS
    if not known:
        report.add("layer-media-type", f"unknown layer media type {media_type}", index)
        return
    if (family == "docker") != (media_type in DOCKER_LAYERS):
        report.add("mixed-media-types", f"a {family} manifest with layer type {media_type}", index)
    if is_nondistributable(media_type):
        where = f" (urls: {', '.join(urls)})" if urls else " (no urls)"
        report.add("nondistributable", f"non-distributable layer {media_type}{where}", index)
    if layer_compression(media_type) == "zstd":
        report.add(
            "zstd-compat",
            "zstd layer: needs Docker >= 23 or containerd >= 1.5 to pull",
            index,
        )
