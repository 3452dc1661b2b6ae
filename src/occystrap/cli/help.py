"""Help texts generated from the transport and filter catalogs, so they never drift.

The catalogs import every transport and filter, which a run does not need: an epilog
naming one of the markers below is generated only when help is shown.
"""

from __future__ import annotations

from typing import Any

import click

from ..options import describe

PROCESS_EPILOG = "<process>"
GLOBAL_EPILOG = "<global>"


def _epilog(marker: str | None) -> str | None:
    if marker == GLOBAL_EPILOG:
        return schemes_help() + "\n\n" + filters_help()
    if marker == PROCESS_EPILOG:
        return PROCESS_EXAMPLES + "\n\n" + schemes_help() + "\n\n" + filters_help()
    return marker


class Command(click.Command):
    def format_epilog(self, ctx: click.Context, formatter: Any) -> None:
        self.epilog = _epilog(self.epilog)
        super().format_epilog(ctx, formatter)


class Group(click.Group):
    def format_epilog(self, ctx: click.Context, formatter: Any) -> None:
        self.epilog = _epilog(self.epilog)
        super().format_epilog(ctx, formatter)


def schemes_help() -> str:
    from ..transports import TRANSPORTS

    lines = ["\b", "Schemes (SOURCE and DEST):"]
    for t in TRANSPORTS:
        roles = "/".join(r for r, ok in (("in", t.source_factory), ("out", t.sink_factory)) if ok)
        alias = f" (alias: {', '.join(a + '://' for a in t.aliases)})" if t.aliases else ""
        lines.append(f"  {t.scheme}://  [{roles}] {t.summary}{alias}")
        for role, cls, example in (
            ("source", t.options_class("source"), t.source_example),
            ("dest", t.options_class("sink"), t.sink_example),
        ):
            if cls is None:
                continue
            opts = describe(cls)
            if opts:
                joined = "; ".join(f"{n}= {doc} [{d}]" for n, d, doc in opts)
                lines.append(f"      ?{role} options: {joined}")
            if example:
                lines.append(f"      e.g. {example}")
    return "\n".join(lines)


def filters_help() -> str:
    from ..filters.catalog import FILTERS

    lines = ["\b", "Filters (-f NAME[:key=value,...], repeatable, applied in order):"]
    for spec in FILTERS:
        lines.append(f"  {spec.name}: {spec.summary}")
        for n, d, doc in describe(spec.options):
            lines.append(f"      {n}= {doc} [{d}]")
        lines.append(f"      e.g. {spec.example}")
    return "\n".join(lines)


PROCESS_EXAMPLES = """\b
Examples:
  occystrap process registry://docker.io/library/busybox:latest tar://busybox.tar
  occystrap process tar://app.tar ocidir://layout:app -f normalize-timestamps
  occystrap process ocidir://layout:app oci://bundle          # then: runc run -b bundle c1
  occystrap process tar://- dir://store?unique_names=true < app.tar
  occystrap process docker://app:dev registry://127.0.0.1:5000/app:dev?insecure=true \\
      -f 'exclude:pattern=**/*.pyc' -f inspect:file=layers.jsonl"""
