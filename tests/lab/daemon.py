"""A Docker-API daemon (podman service or dockerd) on a unix socket, plus a tiny HTTP client."""

from __future__ import annotations

import atexit
import http.client
import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from .procs import Service


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a unix socket."""

    def __init__(self, path: Path, timeout: float = 300) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def json_lines(self) -> list[Any]:
        """A streamed JSON reply (one object per line, as /images/load and /images/create send)."""
        decoder = json.JSONDecoder()
        text, out, pos = self.body.decode(errors="replace"), [], 0
        while pos < len(text):
            if text[pos].isspace():
                pos += 1
                continue
            obj, pos = decoder.raw_decode(text, pos)
            out.append(obj)
        return out


def unix_request(
    socket_path: Path,
    method: str,
    path: str,
    body: bytes | IO[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> Response:
    """One HTTP request over ``socket_path``; a file body is streamed with its size as length."""
    conn = UnixHTTPConnection(socket_path, timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            hdrs.setdefault("Content-Length", str(os.fstat(body.fileno()).st_size))
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Response(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()


_LIVE: list[Daemon] = []


@atexit.register
def _stop_leftovers() -> None:
    """Safety net: stop daemons (and their containerd/mounts) a session did not stop."""
    for daemon in list(_LIVE):
        daemon.stop()


@dataclass
class Daemon:
    """A running Docker-API daemon.

    ``socket``: its unix socket; ``host``: ``unix://SOCKET`` (for DOCKER_HOST /
    ``--src-daemon-host``); ``env``: environment for subprocesses (DOCKER_HOST and, for podman,
    the CONTAINERS_* files so the podman CLI uses the same store).
    """

    kind: Literal["podman", "dockerd"]
    socket: Path
    workdir: Path
    env: dict[str, str]
    service: Service
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        _LIVE.append(self)

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log_file(self) -> Path:
        return self.service.log_file

    def request(
        self,
        method: str,
        path: str,
        body: bytes | IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 300,
    ) -> Response:
        """An Engine API call, e.g. ``request("GET", "/v1.41/images/json")``."""
        return unix_request(self.socket, method, path, body, headers, timeout)

    def ping(self) -> bool:
        try:
            return self.request("GET", "/_ping", timeout=5).body.strip() == b"OK"
        except OSError:
            return False

    def load(self, archive: Path) -> Response:
        """``POST /v1.41/images/load`` of a docker-archive file (streamed)."""
        with open(archive, "rb") as f:
            return self.request(
                "POST", "/v1.41/images/load", f, {"Content-Type": "application/x-tar"}
            )

    def images(self) -> list[dict[str, Any]]:
        resp = self.request("GET", "/v1.41/images/json")
        if resp.status != 200:
            raise AssertionError(f"{self.kind} /images/json: {resp.status} {resp.body[:500]!r}")
        result: list[dict[str, Any]] = resp.json()
        return result

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, wait, SIGKILL) and run the kind-specific cleanups."""
        self.service.stop()
        if self in _LIVE:
            _LIVE.remove(self)
        cleanups, self.cleanups = self.cleanups, []
        for cleanup in cleanups:
            cleanup()
