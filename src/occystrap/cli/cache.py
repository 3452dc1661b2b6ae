"""``occystrap cache ls|prune``: the layer cache of ``--cache-dir`` seen from the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..cache.sizes import format_size, parse_size
from ..errors import UsageError
from ..transports.base import RunContext

if TYPE_CHECKING:
    from ..cache.store import LayerCache


@click.group()
def cache() -> None:
    """The layer cache of --cache-dir / OCCYSTRAP_CACHE_DIR: list or prune it."""


def _cache_of(run: RunContext) -> LayerCache:
    if run.layer_cache is None:
        raise UsageError(
            "no layer cache: give --cache-dir DIR (before the command) or set OCCYSTRAP_CACHE_DIR"
        )
    return run.layer_cache


@cache.command("ls")
@click.option(
    "--json", "as_json", is_flag=True, help="JSON: {root, max_size, size, entries: [...]}."
)
@click.pass_obj
def cache_ls(run: RunContext, as_json: bool) -> None:
    """List cached layers, most recently used first: last use, size, source, filters."""
    import json

    from ..cache.listing import render_entries

    layer_cache = _cache_of(run)
    entries = layer_cache.entries()
    if as_json:
        doc = {
            "root": layer_cache.root,
            "max_size": layer_cache.max_size,
            "size": layer_cache.usage(),
            "entries": [e.describe() for e in entries],
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        click.echo(render_entries(layer_cache, entries))


@cache.command("prune")
@click.option(
    "--max-size",
    metavar="SIZE",
    help="Evict least recently used layers down to SIZE [the --cache-max-size].",
)
@click.option("--all", "everything", is_flag=True, help="Remove every cached layer.")
@click.pass_obj
def cache_prune(run: RunContext, max_size: str | None, everything: bool) -> None:
    """Evict least recently used layers until the cache fits; remove leftovers of killed runs."""
    layer_cache = _cache_of(run)
    limit = parse_size(max_size) if max_size is not None else None
    done = layer_cache.prune(limit, everything=everything)
    click.echo(
        f"removed {done.removed_entries} entries ({format_size(done.removed_bytes)}); "
        f"{done.kept_entries} left ({format_size(done.kept_bytes)})"
    )
