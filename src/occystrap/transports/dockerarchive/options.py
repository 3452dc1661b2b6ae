"""Typed options of docker-save tarballs (``tar://``), parsed from the URI's query."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import option


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
