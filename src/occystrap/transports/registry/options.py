"""Typed options of registries (``registry://``), parsed from the URI's query."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import option


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
