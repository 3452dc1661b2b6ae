"""Bigger socket reads for HTTP bodies, for the command line (the library never changes them).

httpcore's HTTP/1.1 connection asks the socket for at most 64 KiB per read
(``HTTP11Connection.READ_NUM_BYTES``), and every read is parsed by h11 and handed up
through httpx in Python. Reads of up to 1 MiB take whatever the socket holds in one round.
When this was added, a pull into an OCI layout went from 0.86-1.02 s to 0.65-0.83 s
in-process (docs/performance.md). Registry blobs of 8 MiB and more no longer pass through
h11 at all (:mod:`occystrap.transports.registry.body` reads them straight from the socket),
and for them this setting changes nothing measurable now. It still sets the read size of
everything else that h11 parses: the first read of each response, smaller blobs, and
chunked bodies such as a daemon's image export. Over TLS a read returns at most one TLS
record, so the gain there is smaller. Applied only when the command names a transport that
talks HTTP, so other runs never import httpcore.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..transports import TRANSPORTS

READ_SIZE = 1 << 20


def wanted(args: Sequence[str]) -> bool:
    """Whether ``args`` name an image in a transport that talks HTTP (``registry://``...)."""
    schemes = {name for t in TRANSPORTS if t.network for name in (t.scheme, *t.aliases)}
    return any(arg.partition("://")[0].lower() in schemes for arg in args if "://" in arg)


def tune() -> bool:
    """Let httpcore read up to ``READ_SIZE`` per socket read; True if applied."""
    try:
        from httpcore import HTTP11Connection
    except ImportError:
        return False
    current = getattr(HTTP11Connection, "READ_NUM_BYTES", None)
    if not isinstance(current, int):
        return False
    HTTP11Connection.READ_NUM_BYTES = max(current, READ_SIZE)
    return True
