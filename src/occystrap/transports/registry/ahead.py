"""What a registry run starts before the rest of the transport loads.

A registry reached over TLS needs a context with the system's CA certificates, which takes
tens of milliseconds of CPU to load (:mod:`.tls`). :func:`prepare` starts that in a thread
as soon as a run has parsed its ``registry://`` URIs, so it runs on another core while the
HTTP client and the transport are imported. A host reached over plain HTTP needs none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import OccystrapError
from ..base import RunContext
from . import tls
from .reference import parse


def prepare(target: str, options: Any, ctx: RunContext) -> Callable[[], None] | None:
    """Start the set-up ``registry://target`` will need (see the module docstring); return
    what drops it if the run ends without using it."""
    try:
        host = parse(target).host
    except OccystrapError:
        return None  # opening it reports the bad reference
    plain = tls.plain_hosts(ctx.registry.insecure_hosts, host, getattr(options, "insecure", False))
    if tls.TLSConfig(insecure_hosts=plain).is_insecure(host):  # as open_client will decide
        return None
    return tls.prepare()
