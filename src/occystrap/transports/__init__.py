"""Transports: one package per kind of place images live; TRANSPORTS maps URI schemes to them.

Adding a transport means one package, one entry here, and one row in the round-trip tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl

from ..errors import InvalidOption, InvalidReference, UnknownScheme
from ..options import expand_lists, parse_options, split_pairs
from .base import RunContext, Sink, SinkOpener, SourceOpener, Transport, load

TRANSPORTS: tuple[Transport, ...] = (
    Transport(
        "registry",
        "a Docker/OCI registry (Distribution API)",
        source_options="occystrap.transports.registry.options:RegistrySourceOptions",
        sink_options="occystrap.transports.registry.options:RegistrySinkOptions",
        source_factory="occystrap.transports.registry.source:open_source",
        sink_factory="occystrap.transports.registry.sink:open_sink",
        prepare="occystrap.transports.registry.ahead:prepare",
        source_example="registry://docker.io/library/busybox:latest",
        sink_example="registry://127.0.0.1:5000/team/app:v1?insecure=true",
    ),
    Transport(
        "docker",
        "a Docker or Podman daemon over the Engine API (unix socket)",
        source_options="occystrap.transports.daemon.options:DaemonSourceOptions",
        sink_options="occystrap.transports.daemon.options:DaemonSinkOptions",
        source_factory="occystrap.transports.daemon.source:open_source",
        sink_factory="occystrap.transports.daemon.sink:open_sink",
        source_example="docker://busybox:latest?socket=/run/podman/podman.sock",
        sink_example="docker://team/app:v1",
    ),
    Transport(
        "tar",
        "a docker-save tarball (docker load / podman load format); '-' is stdin/stdout",
        aliases=("file", "docker-archive"),
        source_options="occystrap.transports.dockerarchive.options:TarSourceOptions",
        sink_options="occystrap.transports.dockerarchive.options:TarSinkOptions",
        source_factory="occystrap.transports.dockerarchive.source:open_source",
        sink_factory="occystrap.transports.dockerarchive.sink:open_sink",
        source_example="tar://busybox.tar?image=busybox:latest",
        sink_example="tar://out.tar?tag=team/app:v1",
    ),
    Transport(
        "ocidir",
        "an OCI image layout directory, PATH[:REF]",
        aliases=("oci-layout",),
        source_options="occystrap.transports.ocilayout.options:OciDirSourceOptions",
        sink_options="occystrap.transports.ocilayout.options:OciDirSinkOptions",
        source_factory="occystrap.transports.ocilayout.source:open_source",
        sink_factory="occystrap.transports.ocilayout.sink:open_sink",
        source_example="ocidir://./layout:v1",
        sink_example="ocidir://./layout:v1",
    ),
    Transport(
        "dir",
        "a directory of layer tarballs, optionally shared (unique_names) or expanded",
        aliases=("directory",),
        sink_options="occystrap.transports.directory.options:DirSinkOptions",
        sink_factory="occystrap.transports.directory.sink:open_sink",
        sink_example="dir://./store?unique_names=true&expand=true",
    ),
    Transport(
        "oci",
        "an OCI runtime bundle for runc (config.json + rootfs/)",
        aliases=("bundle",),
        sink_options="occystrap.transports.bundle.options:BundleSinkOptions",
        sink_factory="occystrap.transports.bundle.sink:open_sink",
        sink_example="oci://./bundle",
    ),
)


@dataclass(frozen=True)
class Endpoint:
    """A parsed URI: the transport, the transport-specific rest, and typed options."""

    transport: Transport
    target: str
    options: Any
    uri: str


def find(scheme: str) -> Transport:
    low = scheme.lower()
    for t in TRANSPORTS:
        if low == t.scheme or low in t.aliases:
            return t
    known = ", ".join(t.scheme for t in TRANSPORTS)
    raise UnknownScheme(f"unknown scheme {scheme!r} (known: {known})")


def parse(uri: str, role: str) -> Endpoint:
    """Parse ``scheme://target[?query]`` for ``role`` 'source' or 'destination'."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
    elif ":" in uri and uri.split(":", 1)[0].isalpha():
        scheme, rest = uri.split(":", 1)
    else:
        raise InvalidReference(f"{uri!r} is not a URI; expected SCHEME://..., e.g. tar://image.tar")
    transport = find(scheme)
    target, _, query = rest.partition("?")
    opts_cls = transport.options_class("source" if role == "source" else "sink")
    if opts_cls is None:
        can = "destination" if role == "source" else "source"
        raise InvalidReference(f"{transport.scheme}:// can only be used as a {can}")
    if not target:
        raise InvalidReference(f"{uri!r} names nothing after {scheme}://")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InvalidOption(f"malformed query string in {uri!r}") from None
    options = parse_options(opts_cls, expand_lists(opts_cls, pairs), f"{transport.scheme}://")
    return Endpoint(transport, target, options, uri)


def prepare(endpoint: Endpoint, ctx: RunContext) -> Callable[[], None]:
    """Start the slow set-up ``endpoint`` will need (``Transport.prepare``), if any; return
    what drops what the run did not use (call it when the run ends, however it ends)."""
    if endpoint.transport.prepare is not None:
        release = load(endpoint.transport.prepare)(endpoint.target, endpoint.options, ctx)
        if release is not None:
            return cast(Callable[[], None], release)
    return _nothing


def _nothing() -> None:
    pass


def source_opener(endpoint: Endpoint) -> SourceOpener:
    assert endpoint.transport.source_factory is not None
    opener: SourceOpener = load(endpoint.transport.source_factory)
    return opener


def sink_opener(endpoint: Endpoint) -> SinkOpener:
    assert endpoint.transport.sink_factory is not None
    opener: SinkOpener = load(endpoint.transport.sink_factory)
    return opener


__all__ = [
    "TRANSPORTS",
    "Endpoint",
    "Sink",
    "find",
    "parse",
    "prepare",
    "sink_opener",
    "source_opener",
    "split_pairs",
]
