"""FILTERS: the filters that exist, their options, and how to build them from ``-f`` text."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidOption
from ..options import expand_lists, parse_options, split_pairs
from . import options as o
from .base import Filter


@dataclass(frozen=True)
class FilterSpec:
    name: str
    summary: str
    options: type[Any]
    factory: str  # "module:callable" taking the options object
    example: str


FILTERS: tuple[FilterSpec, ...] = (
    FilterSpec(
        "normalize-timestamps",
        "set every entry's mtime (and the config's dates) to one value, for reproducible images",
        o.NormalizeOptions,
        "occystrap.filters.normalize_timestamps:NormalizeTimestamps",
        "-f normalize-timestamps:ts=0",
    ),
    FilterSpec(
        "exclude",
        "remove files matching globs from every layer",
        o.ExcludeOptions,
        "occystrap.filters.exclude:Exclude",
        "-f 'exclude:pattern=**/*.pyc,*.pyo,var/cache'",
    ),
    FilterSpec(
        "search",
        "report files matching a glob or regex, passing everything through",
        o.SearchOptions,
        "occystrap.filters.search:Search",
        "-f 'search:pattern=*.conf'",
    ),
    FilterSpec(
        "inspect",
        "append a JSON line describing each image's layers to a file",
        o.InspectOptions,
        "occystrap.filters.inspect:Inspect",
        "-f inspect:file=layers.jsonl",
    ),
)


def find(name: str) -> FilterSpec:
    key = name.strip().lower().replace("_", "-")
    for spec in FILTERS:
        if spec.name == key:
            return spec
    known = ", ".join(s.name for s in FILTERS)
    raise InvalidOption(f"unknown filter {name!r} (known: {known})")


def parse_filter(text: str) -> Filter:
    """``NAME[:key=value,...]`` → a configured filter."""
    name, _, rest = text.partition(":")
    spec = find(name)
    what = f"filter {spec.name}"
    pairs = expand_lists(spec.options, split_pairs(rest, what))
    opts = parse_options(spec.options, pairs, what)
    module, _, attr = spec.factory.partition(":")
    factory = getattr(importlib.import_module(module), attr)
    built: Filter = factory(opts)
    return built
