"""Typed options of OCI image layouts (``ocidir://``), parsed from the URI's query."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import option


@dataclass(frozen=True)
class OciDirSourceOptions:
    platform: str | None = option(
        None, "os/arch[/variant] to pick from an index (default linux/amd64)"
    )
    index: int | None = option(None, "pick the Nth manifest of index.json instead of a ref name")


@dataclass(frozen=True)
class OciDirSinkOptions:
    ref: str | None = option(None, "ref name to record (same as PATH:REF)")
