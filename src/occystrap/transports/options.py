"""Typed options of every transport's sources and sinks (parsed from URI queries)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option


@dataclass(frozen=True)
class TarSourceOptions:
    image: str | None = option(None, "pick this NAME:TAG when the archive holds several images")
    index: int | None = option(None, "pick the Nth image (0-based) of the archive")


@dataclass(frozen=True)
class TarSinkOptions:
    tag: tuple[str, ...] = option(
        (),
        "RepoTags to record (repeatable); default: the source's name:tag",
        accepts="NAME[:TAG], e.g. team/app:v1 (leave tag out to keep the source's name:tag)",
    )


@dataclass(frozen=True)
class OciDirSourceOptions:
    platform: str | None = option(
        None, "os/arch[/variant] to pick from an index (default linux/amd64)"
    )
    index: int | None = option(None, "pick the Nth manifest of index.json instead of a ref name")


@dataclass(frozen=True)
class OciDirSinkOptions:
    ref: str | None = option(None, "ref name to record (same as PATH:REF)")


@dataclass(frozen=True)
class DirSinkOptions:
    unique_names: bool = option(
        False, "content-addressed layer store shared by many images (catalog.json)"
    )
    expand: bool = option(False, "also extract the layers into PATH/rootfs with whiteouts applied")


@dataclass(frozen=True)
class BundleSinkOptions:
    rootless: bool = option(False, "write a rootless runtime spec (user namespace, no devices)")


@dataclass(frozen=True)
class RegistrySourceOptions:
    platform: str | None = option(
        None, "os/arch[/variant] to pick from an index (default linux/amd64)"
    )
    insecure: bool = option(False, "use plain HTTP for this registry")
    tls_verify: bool = option(True, "verify the registry's TLS certificate")


@dataclass(frozen=True)
class RegistrySinkOptions:
    insecure: bool = option(False, "use plain HTTP for this registry")
    tls_verify: bool = option(True, "verify the registry's TLS certificate")
    compression: str | None = option(None, "gzip, zstd or none for layers that must be compressed")
    level: int | None = option(None, "compression level for layers that must be compressed")


@dataclass(frozen=True)
class DaemonSourceOptions:
    socket: str | None = option(
        None, "Engine API unix socket (default: $DOCKER_HOST, /var/run/docker.sock)"
    )
    platform: str | None = option(None, "os/arch[/variant] (needs API >= 1.48)")


@dataclass(frozen=True)
class DaemonSinkOptions:
    socket: str | None = option(
        None, "Engine API unix socket (default: $DOCKER_HOST, /var/run/docker.sock)"
    )
