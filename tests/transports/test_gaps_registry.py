"""Registry-source gaps closed: TLS to a plain-HTTP registry fails at once with a hint, schema 1
layers are capped (download size and decompression), and a platform mismatch of a single
manifest says what the image is rather than what an index "offers".

Bombs are small here: the CLI runs with ``occystrap.bounds.EXPANSION_FLOOR`` lowered to
1 MiB (so a 16 MiB run of zeros, about 16 KiB of gzip, is one) or ``MAX_UNSIZED_BLOB``
lowered; with the real bounds the same images convert fine.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from lab.loopback import accept_each
from lab.ocilayout import LayoutInfo
from lab.registry import Registry
from lab.tarspec import file, tar_bytes
from lab.tools import skopeo

SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
ZEROS = 16 << 20

#: ``python -m occystrap`` with ``occystrap.bounds`` attributes set from ``NAME=VALUE`` args
#: given before the CLI's own arguments (up to a ``--``)
BOUNDED = (
    "import sys, occystrap.bounds as b\n"
    "while sys.argv[1] != '--':\n"
    "    name, value = sys.argv.pop(1).split('=')\n"
    "    setattr(b, name, int(value))\n"
    "sys.argv.pop(1)\n"
    "from occystrap.cli.main import main\n"
    "main()\n"
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No credentials, certificates or caches of this machine."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        **os.environ,
        "HOME": str(home),
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "REGISTRY_AUTH_FILE": str(tmp_path / "no-auth.json"),
    }


def occystrap(
    env: Mapping[str, str], *args: str | Path, bounds: Mapping[str, int] | None = None
) -> subprocess.CompletedProcess[bytes]:
    set_bounds = [f"{k}={v}" for k, v in (bounds or {}).items()]
    cmd = [sys.executable, "-c", BOUNDED, *set_bounds, "--", *map(str, args)]
    return subprocess.run(
        cmd, env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, timeout=300, check=False
    )


def one_line_error(done: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    err = done.stderr.decode(errors="replace").strip()
    assert done.returncode == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("occystrap: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- 1. TLS to a registry that speaks plain HTTP ----------------------------------------------


class CountingForwarder:
    """A TCP forwarder on loopback that counts the connections made through it."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.server.getsockname()[1]}"
        accept_each(self.server, self._forward)

    def _forward(self, client: socket.socket) -> None:
        self.connections += 1
        up = socket.create_connection(self.upstream)
        for a, b in ((client, up), (up, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def test_tls_to_a_plain_http_registry_fails_at_once_with_a_hint(
    registry_plain: Registry, busybox_layout: LayoutInfo, env: dict[str, str], tmp_path: Path
) -> None:
    skopeo("copy", *registry_plain.skopeo_args("dest"), busybox_layout.ref,
           registry_plain.ref("gaps/plain", "v1"))  # fmt: skip
    forwarder = CountingForwarder(registry_plain.host)
    try:
        done = occystrap(env, "process", f"registry://{forwarder.host}/gaps/plain:v1",
                         f"tar://{tmp_path / 'o.tar'}")  # fmt: skip
    finally:
        forwarder.close()
    line = one_line_error(done, "TLS handshake failed", "WRONG_VERSION_NUMBER",
                          "the registry may speak plain HTTP: add ?insecure=true or --insecure")  # fmt: skip
    assert "attempts" not in line, line
    assert forwarder.connections == 1, "a TLS protocol error was retried"
    assert not (tmp_path / "o.tar").exists()
    ok = occystrap(env, "process", f"registry://{registry_plain.host}/gaps/plain:v1?insecure=true",
                   f"tar://{tmp_path / 'o.tar'}")  # fmt: skip
    assert ok.returncode == 0, ok.stderr.decode()


# -- 2. schema 1 layers: download size and decompression capped --------------------------------


class Schema1Registry:
    """A loopback registry serving one unsigned schema 1 manifest ``old/app:v1`` and its blobs
    (distribution 2.8 refuses to store schema 1)."""

    def __init__(self, layers: list[bytes]) -> None:
        self.blobs = {sha256(b): b for b in layers}
        history = [{"v1Compatibility": json.dumps({"id": f"{i:064x}", "created": "2016-01-01T00:00:00Z"}
                    | ({"parent": f"{i + 1:064x}"} if i + 1 < len(layers) else {}))}
                   for i in range(len(layers))]  # fmt: skip
        doc = {"schemaVersion": 1, "name": "old/app", "tag": "v1", "architecture": "amd64",
               "fsLayers": [{"blobSum": sha256(b)} for b in reversed(layers)], "history": history}  # fmt: skip
        manifest = json.dumps(doc, indent=3).encode()
        blobs = self.blobs

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[1]
                if self.path == "/v2/":
                    self._send(b"{}", "application/json")
                elif self.path == "/v2/old/app/manifests/v1":
                    self._send(manifest, SCHEMA1, {"Docker-Content-Digest": sha256(manifest)})
                elif self.path.startswith("/v2/old/app/blobs/") and name in blobs:
                    self._send(blobs[name], "application/octet-stream")
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def _send(self, body: bytes, ctype: str, extra: Mapping[str, str] = {}) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def bomb_registry() -> Iterator[Schema1Registry]:
    zeros = gzip.compress(tar_bytes([file("zeros", bytes(ZEROS))]), mtime=0)
    small = gzip.compress(tar_bytes([file("a.txt", "a\n")]), mtime=0)
    assert len(zeros) < 64 << 10
    fake = Schema1Registry([zeros, small])
    try:
        yield fake
    finally:
        fake.close()


def test_schema1_layer_bomb_is_refused(
    bomb_registry: Schema1Registry, env: dict[str, str], tmp_path: Path
) -> None:
    src = f"registry://{bomb_registry.host}/old/app:v1"
    out = tmp_path / "out"
    done = occystrap(env, "--insecure", "process", src, f"ocidir://{out}:v1",
                     bounds={"EXPANSION_FLOOR": 1 << 20})  # fmt: skip
    one_line_error(done, "layer", "limit")
    assert "Traceback" not in done.stderr.decode()
    assert not (out / "index.json").exists()
    fine = occystrap(env, "--insecure", "process", src, f"ocidir://{out}:v1")  # real bounds
    assert fine.returncode == 0, fine.stderr.decode()
    skopeo("copy", f"oci:{out}:v1", f"oci:{tmp_path / 'judge'}:x")


def test_schema1_layer_download_is_capped(
    bomb_registry: Schema1Registry, env: dict[str, str], tmp_path: Path
) -> None:
    src = f"registry://{bomb_registry.host}/old/app:v1"
    out = tmp_path / "out"
    temp = tmp_path / "temp"  # where the layer is spooled (the system default, here)
    temp.mkdir()
    done = occystrap({**env, "TMPDIR": str(temp)}, "--insecure", "process", src,
                     f"ocidir://{out}:v1", bounds={"MAX_UNSIZED_BLOB": 4096})  # fmt: skip
    one_line_error(done, "over the 4096-byte limit for a blob of unknown size")
    assert not (out / "index.json").exists()
    assert list(temp.iterdir()) == []


# -- 3. platform wording for a single manifest ---------------------------------------------------


def test_platform_mismatch_of_a_single_manifest_names_the_image_platform(
    registry_plain: Registry, busybox_layout: LayoutInfo, env: dict[str, str], tmp_path: Path
) -> None:
    skopeo("copy", *registry_plain.skopeo_args("dest"), busybox_layout.ref,
           registry_plain.ref("gaps/single-manifest", "v1"))  # fmt: skip
    done = occystrap(env, "--insecure", "--platform", "linux/arm64", "process",
                     f"registry://{registry_plain.host}/gaps/single-manifest:v1",
                     f"tar://{tmp_path / 'o.tar'}")  # fmt: skip
    line = one_line_error(done, "linux/arm64", "the image is linux/amd64")
    assert "index" not in line, line
    done = occystrap(env, "--platform", "linux/arm64", "process",
                     f"ocidir://{busybox_layout.path}", f"tar://{tmp_path / 'o.tar'}")  # fmt: skip
    line = one_line_error(done, "linux/arm64", "the image is linux/amd64")
    assert "index" not in line, line
    assert not (tmp_path / "o.tar").exists()
