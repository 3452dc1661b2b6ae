"""Typed options of each filter (parsed from ``-f NAME:key=value,...``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option


@dataclass(frozen=True)
class NormalizeOptions:
    ts: int | None = option(None, "timestamp to set (default: $SOURCE_DATE_EPOCH, else 0)")


@dataclass(frozen=True)
class ExcludeOptions:
    pattern: tuple[str, ...] = option((), "glob to remove (repeatable; ** crosses directories)")


@dataclass(frozen=True)
class SearchOptions:
    pattern: str = option("", "glob (matches the path or its basename) or regex to look for")
    regex: bool = option(False, "treat pattern as a Python regular expression")
    script_friendly: bool = option(False, "one tab-separated line per hit")
    json: bool = option(False, "one JSON object per hit")


@dataclass(frozen=True)
class InspectOptions:
    file: str = option("", "append one JSON line per image to this file")
