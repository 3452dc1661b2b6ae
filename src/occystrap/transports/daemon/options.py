"""Typed options of Docker and Podman daemons (``docker://``), parsed from the URI's query."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import option


@dataclass(frozen=True)
class DaemonSourceOptions:
    socket: str | None = option(
        None, "Engine API unix socket (default: $DOCKER_HOST, /var/run/docker.sock)"
    )
    platform: str | None = option(None, "os/arch[/variant] (needs API >= 1.48)")


@dataclass(frozen=True)
class DaemonSinkOptions:
    socket: str | None = option(
        None, "Engine API unix socket (default: $DOCKER_HOST, /var/run/docker.sock)"
    )
