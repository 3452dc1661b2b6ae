"""The test lab: real registries, Docker-API daemons, fixture images and validators.

Modules: ``registry`` (docker-registry in plain/auth/tls/tls-auth/token modes), ``podman`` and
``dockerd`` (daemons on unix sockets), ``images`` (fixture image builders), ``schemas`` (OCI JSON
schema validation), ``tools`` (system tools), ``rss`` (peak memory and time of a command),
``loopback`` (the accept loop of the small fault-injecting servers). Everything binds
127.0.0.1 only; nothing here imports occystrap.
"""

from __future__ import annotations

import os

#: Network interfaces present when the lab was first imported (tests check none were added).
INITIAL_NET_IFACES: frozenset[str] = frozenset(
    os.listdir("/sys/class/net") if os.path.isdir("/sys/class/net") else ()
)
