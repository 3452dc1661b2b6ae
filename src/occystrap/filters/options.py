"""Typed options of each filter (parsed from ``-f NAME:key=value,...``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option


@dataclass(frozen=True)
class NormalizeOptions:
    ts: int | None = option(None, "timestamp to set (default: $SOURCE_DATE_EPOCH, else 0)")
    timestamp: int | None = option(None, "same as ts")


@dataclass(frozen=True)
class ExcludeOptions:
    pattern: tuple[str, ...] = option(
        (), "glob to remove (repeatable, or comma-separated; ** crosses directories)"
    )


@dataclass(frozen=True)
class SearchOptions:
    pattern: str = option("", "glob (no '/': matches the basename) or regex to look for")
    regex: bool = option(False, "treat pattern as a Python regular expression (re.search)")
    script_friendly: bool = option(
        False,
        "one tab-separated line per hit: image, layer digest, path, type, size, link target,"
        " status (visible/deleted/replaced), layer that deleted or replaced it",
    )
    json: bool = option(False, "one JSON object per hit")


@dataclass(frozen=True)
class InspectOptions:
    file: str = option("", "append one JSON line per image to this file")
