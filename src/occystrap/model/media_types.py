"""Media types of manifests, indexes, configs and layers (OCI and Docker)."""

from __future__ import annotations

from enum import StrEnum


class MediaType(StrEnum):
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
    DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


MANIFEST_TYPES = (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST)
INDEX_TYPES = (MediaType.OCI_INDEX, MediaType.DOCKER_LIST)
SCHEMA1_TYPES = (MediaType.DOCKER_SCHEMA1, MediaType.DOCKER_SCHEMA1_SIGNED)

#: What we send in Accept when fetching a manifest: everything we can read.
ACCEPT_MANIFESTS = ", ".join(
    [
        MediaType.OCI_INDEX,
        MediaType.OCI_MANIFEST,
        MediaType.DOCKER_LIST,
        MediaType.DOCKER_MANIFEST,
        MediaType.DOCKER_SCHEMA1_SIGNED,
        MediaType.DOCKER_SCHEMA1,
    ]
)


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def is_oci(media_type: str) -> bool:
    return media_type.startswith("application/vnd.oci.")


def layer_compression(media_type: str) -> str | None:
    """'gzip', 'zstd' or 'none' from a layer media type; None when the type says nothing."""
    mt = media_type.lower()
    if mt.endswith(("+gzip", ".gzip")):
        return "gzip"
    if mt.endswith(("+zstd", ".zstd")):
        return "zstd"
    if mt.endswith((".tar", "+tar")) or mt == MediaType.DOCKER_LAYER:
        return "none"
    return None


def is_nondistributable(media_type: str) -> bool:
    return "nondistributable" in media_type or "foreign" in media_type


def layer_media_type(compression: str, oci: bool) -> str:
    """The layer media type for ``compression`` in the OCI or Docker family.

    Docker schema 2 has no zstd type, so zstd is always written with the OCI type.
    """
    if compression == "zstd":
        return MediaType.OCI_LAYER_ZSTD
    if compression == "gzip":
        return MediaType.OCI_LAYER_GZIP if oci else MediaType.DOCKER_LAYER_GZIP
    return MediaType.OCI_LAYER if oci else MediaType.DOCKER_LAYER
