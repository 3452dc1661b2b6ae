"""The library API the CLI itself uses: open a source, build filters, write to a sink."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import transports
from .copy import CopyResult, copy_image
from .errors import UnsupportedFormat
from .image import Image
from .model.descriptor import Descriptor
from .transports.base import RunContext, Sink

if TYPE_CHECKING:  # what a copy of one image without filters never loads
    from .copy_index import IndexCopyResult, Reopen
    from .filters.base import Filter


@contextmanager
def open_source(uri: str, ctx: RunContext | None = None) -> Iterator[Image]:
    """Open ``uri`` (e.g. ``tar://img.tar``) as an image; layers are read lazily."""
    ctx = ctx or RunContext()
    endpoint = transports.parse(uri, "source")
    release = transports.prepare(endpoint, ctx)
    try:
        with transports.source_opener(endpoint)(endpoint.target, endpoint.options, ctx) as image:
            yield image
    finally:
        release()


def open_sink(uri: str, ctx: RunContext | None = None) -> Sink:
    """A sink for ``uri`` (e.g. ``ocidir://out:v1``); nothing is visible before commit."""
    ctx = ctx or RunContext()
    endpoint = transports.parse(uri, "destination")
    release = transports.prepare(endpoint, ctx)
    try:
        return _sink(endpoint, ctx)
    finally:
        release()


def _sink(endpoint: transports.Endpoint, ctx: RunContext) -> Sink:
    return transports.sink_opener(endpoint)(endpoint.target, endpoint.options, ctx)


def process(
    source: str,
    destination: str,
    filters: Sequence[str | Filter] = (),
    ctx: RunContext | None = None,
) -> CopyResult | IndexCopyResult:
    """Copy one image from ``source`` to ``destination`` through ``filters``.

    With ``ctx.all_platforms`` and a source that names an index, every image of the index
    and the index itself are copied (:func:`copy_index`); the result is an IndexCopyResult.
    """
    ctx = ctx or RunContext()
    chain = _filters(filters)
    dest = transports.parse(destination, "destination")  # fail on a bad destination early
    ctx = _with_compression(ctx, dest.options)
    release = transports.prepare(dest, ctx)  # while the source opens
    try:
        with open_source(source, ctx) as image:
            sink = _sink(dest, ctx)
            if ctx.all_platforms:
                from .copy_index import copy_index

                return copy_index(image, sink, chain, ctx, reopen=_reopener(source, ctx))
            return copy_image(image, sink, chain, ctx)
    finally:
        release()


def _filters(filters: Sequence[str | Filter]) -> list[Filter]:
    """Filters given by name (``"exclude:pattern=*.pyc"``) parsed; the others as they are."""
    if not any(isinstance(f, str) for f in filters):
        return [f for f in filters if not isinstance(f, str)]
    from .filters.catalog import parse_filter

    return [parse_filter(f) if isinstance(f, str) else f for f in filters]


def _with_compression(ctx: RunContext, options: object) -> RunContext:
    """A destination's ``?compression=``/``?level=`` override the run's settings."""
    compression = getattr(options, "compression", None) or ctx.compression
    level = getattr(options, "level", None)
    if level is None and compression == ctx.compression:
        level = ctx.compression_level  # the run's level belongs to the run's compression
    if (compression, level) == (ctx.compression, ctx.compression_level):
        return ctx
    from .blobio.compression import validate_level  # the compressors load when used

    validate_level(compression, level)
    return dataclasses.replace(ctx, compression=compression, compression_level=level)


def _reopener(source: str, ctx: RunContext) -> Reopen:
    """For sources without ``Image.open_manifest``: open ``source`` again for one index
    entry's platform (``copy_index`` checks that the manifest digest matches)."""

    @contextmanager
    def reopen(desc: Descriptor) -> Iterator[Image]:
        if desc.platform is None:
            raise UnsupportedFormat(
                f"{source}: cannot open index entry {desc.digest} (it has no platform)"
            )
        entry_ctx = dataclasses.replace(ctx, platform=desc.platform, all_platforms=False)
        with open_source(source, entry_ctx) as image:
            yield image

    return reopen


def search(
    source: str,
    pattern: str,
    *,
    regex: bool = False,
    script_friendly: bool = False,
    as_json: bool = False,
    ctx: RunContext | None = None,
) -> int:
    """Search ``source``'s layers for ``pattern``; hits go to ``ctx.reporter.result``.

    Returns the number of hits (the CLI exits 0 when it is non-zero, like grep).
    """
    from .filters.options import SearchOptions
    from .filters.search import Search
    from .transports.null import NullSink

    ctx = ctx or RunContext()
    finder = Search(
        SearchOptions(pattern=pattern, regex=regex, script_friendly=script_friendly, json=as_json)
    )
    with open_source(source, ctx) as image:
        copy_image(image, NullSink(), [finder], ctx)
    return finder.hits
