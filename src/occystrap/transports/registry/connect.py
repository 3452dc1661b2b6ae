"""From run settings to a ready :class:`RegistryClient` for one host.

The run's :class:`~occystrap.transports.base.RegistrySettings` (CLI flags) apply to every
registry of the run; a URI's ``?insecure=true`` / ``?tls_verify=false`` add its own host.
``--username/--password`` (or ``OCCYSTRAP_USERNAME/OCCYSTRAP_PASSWORD``) are used for every
registry the run talks to; otherwise credentials come from the auth files and helpers
(:func:`.credentials.lookup`). ``--retries N`` means N retries, so N + 1 attempts.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..base import RunContext
from .client import RegistryClient
from .credentials import lookup
from .retry import RetryPolicy
from .tls import TLSConfig, plain_hosts

#: Values of ``RegistrySettings.partial_dir`` or ``locations_dir`` that switch it off.
SWITCHED_OFF = ("", "off", "none")


def open_client(
    host: str, ctx: RunContext, *, insecure: bool = False, tls_verify: bool = True
) -> RegistryClient:
    """A client for ``host`` configured from ``ctx`` plus the URI's own options."""
    settings = ctx.registry
    no_verify = set() if settings.tls_verify else {"*"}
    if not tls_verify:
        no_verify.add(host)
    tls = TLSConfig(
        ca_file=settings.ca_file,
        cert_dir=settings.cert_dir,
        no_verify_hosts=frozenset(no_verify),
        insecure_hosts=plain_hosts(settings.insecure_hosts, host, insecure),
    )
    credentials = lookup(host, username=settings.username, password=settings.password)
    return RegistryClient(
        host,
        tls=tls,
        credentials=credentials,
        retry=RetryPolicy(attempts=max(0, settings.retries) + 1),
        timeout=settings.timeout,
        max_connections=max(16, 2 * ctx.jobs),
    )


def partial_dir(ctx: RunContext) -> Path | None:
    """Where partly downloaded blobs wait for the next run; None when resume is off.

    ``RegistrySettings.partial_dir`` if set, else ``$XDG_CACHE_HOME/occystrap/partial``
    (``~/.cache/occystrap/partial``).
    """
    return _cache_dir(ctx.registry.partial_dir, "partial")


def locations_dir(ctx: RunContext) -> Path | None:
    """Where pushes remember which repositories hold each blob (see :mod:`.locations`);
    None when that is off. ``RegistrySettings.locations_dir`` if set, else
    ``$XDG_CACHE_HOME/occystrap/locations``."""
    return _cache_dir(ctx.registry.locations_dir, "locations")


def _cache_dir(chosen: str | None, name: str) -> Path | None:
    if chosen is not None:
        return None if chosen.strip().lower() in SWITCHED_OFF else Path(chosen)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "occystrap" / name
