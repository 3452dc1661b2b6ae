"""``occystrap cache ls`` as a table: last use, size, what the entry was made from."""

from __future__ import annotations

import time
from collections.abc import Sequence

from .entry import Entry
from .sizes import format_size
from .store import LayerCache


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _filters(entry: Entry) -> str:
    names = []
    for f in entry.key.get("filters", []):
        if not isinstance(f, dict):
            continue
        settings = f.get("settings")
        if isinstance(settings, dict) and settings:
            shown = ",".join(f"{k}={v}" for k, v in sorted(settings.items()))
            names.append(f"{f.get('name')}:{shown}")
        else:
            names.append(str(f.get("name")))
    return " ".join(names) or "-"


def _form(entry: Entry) -> str:
    key = entry.key
    if key.get("form") != "stored":
        return "tar"
    level = key.get("level")
    return f"{key.get('compression')}" + (f":{level}" if level is not None else "")


def render_entries(cache: LayerCache, entries: Sequence[Entry]) -> str:
    """One line per entry, most recently used first, then the total."""
    lines = [f"{'LAST USED':19}  {'SIZE':>9}  {'OUTPUT':9}  {'SOURCE':19}  FILTERS"]
    for e in entries:
        source = str(e.key.get("source", "?"))
        alg, _, rest = source.partition(":")
        size = "passthru" if e.passthrough else format_size(e.size)
        lines.append(
            f"{_when(e.last_used):19}  {size:>9}  {_form(e):9}  {alg}:{rest[:12]:12}  {_filters(e)}"
        )
    lines.append(
        f"{len(entries)} entries, {format_size(cache.usage())} of {format_size(cache.max_size)}"
        f" in {cache.root}"
    )
    return "\n".join(lines)
