"""Manifest and Index (OCI and Docker schema 2), parsed from and built to exact bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..errors import MalformedInput, PlatformNotFound, UnsupportedFormat
from .descriptor import Descriptor, Platform
from .digest import Digest
from .jsonfile import dump_canonical, load_object
from .media_types import INDEX_TYPES, MANIFEST_TYPES, SCHEMA1_TYPES, MediaType


@dataclass(frozen=True)
class Manifest:
    """An image manifest. ``raw`` is authoritative: it is what gets stored and pushed."""

    raw: bytes
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = None
    subject: Descriptor | None = None

    @cached_property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw)

    def descriptor(self, **extra: Any) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw), **extra)

    @property
    def is_oci(self) -> bool:
        return self.media_type == MediaType.OCI_MANIFEST

    @classmethod
    def build(
        cls,
        media_type: str,
        config: Descriptor,
        layers: Sequence[Descriptor],
        annotations: Mapping[str, str] | None = None,
    ) -> Manifest:
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        if annotations:
            obj["annotations"] = dict(annotations)
        return cls(dump_canonical(obj), media_type, config, tuple(layers), annotations)


@dataclass(frozen=True)
class Index:
    """An OCI image index or a Docker manifest list."""

    raw: bytes
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = None

    @cached_property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw)

    def descriptor(self, **extra: Any) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw), **extra)

    def select(self, wanted: Platform) -> Descriptor:
        """The first entry matching ``wanted`` (the spec's rule), else PlatformNotFound."""
        offered: list[str] = []
        for desc in self.manifests:
            if desc.platform is None:
                continue
            if is_attestation(desc):
                continue
            offered.append(str(desc.platform))
            if wanted.matches(desc.platform):
                return desc
        # An index whose only image entry has no platform (e.g. docker save): take it.
        plain = [d for d in self.manifests if d.platform is None and not is_attestation(d)]
        if len(plain) == 1 and not offered:
            return plain[0]
        raise PlatformNotFound(str(wanted), offered)

    @classmethod
    def build(
        cls,
        media_type: str,
        manifests: Sequence[Descriptor],
        annotations: Mapping[str, str] | None = None,
    ) -> Index:
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [m.to_json() for m in manifests],
        }
        if annotations:
            obj["annotations"] = dict(annotations)
        return cls(dump_canonical(obj), media_type, tuple(manifests), annotations)


def is_attestation(desc: Descriptor) -> bool:
    """True for an index entry that describes another entry (BuildKit provenance/SBOM)."""
    ann = desc.annotations or {}
    return ann.get("vnd.docker.reference.type") == "attestation-manifest" or (
        desc.platform is not None and desc.platform.os == "unknown"
    )


def parse(raw: bytes, content_type: str | None = None, what: str = "manifest") -> Manifest | Index:
    """Parse manifest or index bytes. ``content_type`` (from HTTP or a descriptor) is checked."""
    obj = load_object(raw, what)
    declared = obj.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise MalformedInput(f"{what} has a non-string mediaType")
    if content_type in SCHEMA1_TYPES or declared in SCHEMA1_TYPES or obj.get("schemaVersion") == 1:
        raise UnsupportedFormat(f"{what} is a Docker schema 1 manifest; convert it first")
    media_type = declared or _guess(obj, content_type)
    if (
        content_type
        and declared
        and content_type != declared
        and content_type
        not in (
            "application/json",
            "application/octet-stream",
        )
    ):
        raise MalformedInput(f"{what} says it is {declared} but was served as {content_type}")
    if obj.get("schemaVersion") != 2:
        raise MalformedInput(f"{what} has schemaVersion {obj.get('schemaVersion')!r}, expected 2")
    annotations = obj.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise MalformedInput(f"{what} has malformed annotations")
    if media_type in INDEX_TYPES:
        entries = obj.get("manifests")
        if not isinstance(entries, list):
            raise MalformedInput(f"{what} (index) has no 'manifests' list")
        descs = tuple(Descriptor.from_json(e, f"{what} entry {i}") for i, e in enumerate(entries))
        return Index(raw, media_type, descs, annotations)
    if media_type in MANIFEST_TYPES or "config" in obj:
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise MalformedInput(f"{what} has no 'layers' list")
        config = Descriptor.from_json(obj.get("config"), f"{what} config descriptor")
        descs = tuple(Descriptor.from_json(e, f"{what} layer {i}") for i, e in enumerate(layers))
        subject = (
            Descriptor.from_json(obj["subject"], f"{what} subject") if obj.get("subject") else None
        )
        return Manifest(raw, media_type, config, descs, annotations, subject)
    raise UnsupportedFormat(f"{what} has unknown media type {media_type!r}")


def _guess(obj: dict[str, Any], content_type: str | None) -> str:
    if content_type and content_type not in ("application/json", "application/octet-stream"):
        return content_type
    # umoci and others omit mediaType; the shape tells.
    return MediaType.OCI_INDEX if "manifests" in obj else MediaType.OCI_MANIFEST
