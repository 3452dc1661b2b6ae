"""The library API the CLI itself uses: open a source, build filters, write to a sink."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from . import transports
from .copy import CopyResult, copy_image
from .filters.base import Filter
from .filters.catalog import parse_filter
from .image import Image
from .transports.base import RunContext, Sink


@contextmanager
def open_source(uri: str, ctx: RunContext | None = None) -> Iterator[Image]:
    """Open ``uri`` (e.g. ``tar://img.tar``) as an image; layers are read lazily."""
    ctx = ctx or RunContext()
    endpoint = transports.parse(uri, "source")
    with transports.source_opener(endpoint)(endpoint.target, endpoint.options, ctx) as image:
        yield image


def open_sink(uri: str, ctx: RunContext | None = None) -> Sink:
    """A sink for ``uri`` (e.g. ``ocidir://out:v1``); nothing is visible before commit."""
    ctx = ctx or RunContext()
    endpoint = transports.parse(uri, "destination")
    return transports.sink_opener(endpoint)(endpoint.target, endpoint.options, ctx)


def process(
    source: str,
    destination: str,
    filters: Sequence[str | Filter] = (),
    ctx: RunContext | None = None,
) -> CopyResult:
    """Copy one image from ``source`` to ``destination`` through ``filters``."""
    ctx = ctx or RunContext()
    chain = [parse_filter(f) if isinstance(f, str) else f for f in filters]
    transports.parse(destination, "destination")  # fail on a bad destination before reading
    with open_source(source, ctx) as image:
        sink = open_sink(destination, ctx)
        return copy_image(image, sink, chain, ctx)


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
    finder = Search(SearchOptions(pattern=pattern, regex=regex, script_friendly=script_friendly, json=as_json))
    with open_source(source, ctx) as image:
        copy_image(image, NullSink(), [finder], ctx)
    return finder.hits
