"""DaemonClient against a real ``podman system service`` and a real dockerd 20.10.

Every image test runs on both daemons (they disagree on error reporting, name qualification
and export layout). A tiny docker-save tarball (one busybox-static layer) is built with tarfile.
A fake Engine API server on a unix socket covers what these daemons cannot show: a daemon newer
than our maximum API version (capping, the ``platform`` query) and one that is too old.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import platform as host_platform
import socket
import socketserver
import sys
import tarfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from occystrap.errors import DaemonError, ImageNotFound, InvalidOption, MalformedInput
from occystrap.transports.daemon.client import CHUNK, DaemonClient, resolve_socket

try:
    from lab.daemon import Daemon
    from lab.dockerd import start_dockerd
    from lab.podman import start_podman
except ImportError:  # tests/ is not on sys.path when no conftest puts it there
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lab.daemon import Daemon
    from lab.dockerd import start_dockerd
    from lab.podman import start_podman

BUSYBOX = Path("/bin/busybox")
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(host_platform.machine(), host_platform.machine())


# -- a docker-save tarball built by hand ------------------------------------------------------


@dataclass
class BuiltImage:
    path: Path
    tag: str  # short RepoTag, e.g. occystrap-test/bb-1a2b3c:v1
    image_id: str  # sha256:<hex of the config bytes>
    diff_id: str


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def build_image(workdir: Path) -> BuiltImage:
    """One busybox layer, a config with the right diff_id, manifest.json with a RepoTags entry."""
    if not BUSYBOX.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("/bin/busybox (busybox-static) is not installed", pytrace=False)
        pytest.skip("/bin/busybox (busybox-static) is not installed")
    layer = workdir / "layer.tar"
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        bindir = tarfile.TarInfo("bin")
        bindir.type, bindir.mode, bindir.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
        tar.addfile(bindir)
        info = tar.gettarinfo(str(BUSYBOX), "bin/busybox")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        with open(BUSYBOX, "rb") as f:
            tar.addfile(info, f)
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "busybox", 1_700_000_000
        tar.addfile(link)
    diff_hex = hashlib.sha256(layer.read_bytes()).hexdigest()
    config = json.dumps(
        {
            "architecture": ARCH,
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_hex}"]},
            "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "test"}],
        },
        sort_keys=True,
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    tag = f"occystrap-test/bb-{uuid.uuid4().hex[:8]}:v1"
    manifest = [
        {"Config": f"{config_hex}.json", "RepoTags": [tag], "Layers": [f"{diff_hex}/layer.tar"]}
    ]
    archive = workdir / "image.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, f"{config_hex}.json", config)
        tar.add(str(layer), f"{diff_hex}/layer.tar")
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return BuiltImage(archive, tag, f"sha256:{config_hex}", f"sha256:{diff_hex}")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["podman", "dockerd"])
def daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    starter = start_podman if request.param == "podman" else start_dockerd
    started = starter(tmp_path_factory.mktemp(request.param))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def client(daemon: Daemon) -> Iterator[DaemonClient]:
    with DaemonClient(str(daemon.socket)) as c:
        yield c


@pytest.fixture
def image(tmp_path: Path) -> BuiltImage:
    return build_image(tmp_path)


def _chunks(path: Path, size: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(size):
            yield data


# -- real daemons -----------------------------------------------------------------------------


def test_negotiates_api_141(client: DaemonClient, daemon: Daemon) -> None:
    assert client.api_version == "1.41"
    info = client.version()
    assert info["ApiVersion"] == "1.41"
    # the negotiated prefix is really what the daemon gets: dockerd rejects anything newer
    too_new = daemon.request("GET", "/v1.48/images/json")
    assert (too_new.status == 400) == (daemon.kind == "dockerd")


def test_load_inspect_export_tag_remove(
    client: DaemonClient, image: BuiltImage, tmp_path: Path
) -> None:
    with open(image.path, "rb") as f:
        loaded = client.load_image(f)
    assert any(name.endswith(image.tag) for name in loaded), loaded

    info = client.inspect_image(image.tag)
    assert info["Id"] == image.image_id
    assert info["RootFS"]["Layers"] == [image.diff_id]
    assert any(image.tag in t for t in info["RepoTags"])
    assert any(image.image_id == i["Id"] for i in client.list_images())

    exported = tmp_path / "exported.tar"
    sizes: list[int] = []
    with client.export_image(image.tag) as reader, open(exported, "wb") as out:
        while data := reader.read(CHUNK):
            sizes.append(len(data))
            out.write(data)
    assert len(sizes) >= 2 and all(n == CHUNK for n in sizes[:-1]), sizes
    with tarfile.open(exported) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert len(manifest) == 1
        config = tar.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
        assert json.loads(config)["rootfs"]["diff_ids"] == [image.diff_id]
        digests = []
        for name in manifest[0]["Layers"]:
            layer = tar.extractfile(name)
            assert layer is not None
            digest = hashlib.sha256()
            while data := layer.read(CHUNK):
                digest.update(data)
            digests.append(f"sha256:{digest.hexdigest()}")
    assert digests == [image.diff_id]

    repo = image.tag.split(":")[0]
    client.tag_image(image.tag, repo, "v2")
    assert client.inspect_image(f"{repo}:v2")["Id"] == image.image_id
    report = client.remove_image(f"{repo}:v2")
    assert any("Untagged" in r for r in report), report
    assert client.inspect_image(image.tag)["Id"] == image.image_id
    report = client.remove_image(image.tag)
    # dockerd reports "sha256:<hex>", podman the bare hex
    assert any(r.get("Deleted", "").endswith(image.image_id[7:]) for r in report), report
    with pytest.raises(ImageNotFound):
        client.inspect_image(image.image_id)


def test_load_from_chunk_iterator(client: DaemonClient, image: BuiltImage) -> None:
    loaded = client.load_image(_chunks(image.path, 65536), quiet=False)
    assert any(name.endswith(image.tag) for name in loaded), loaded
    assert client.inspect_image(image.tag)["Id"] == image.image_id
    client.remove_image(image.tag)


def test_source_error_during_upload_propagates(client: DaemonClient, image: BuiltImage) -> None:
    def broken() -> Iterator[bytes]:
        chunks = _chunks(image.path, 65536)
        yield next(chunks)
        yield next(chunks)
        raise MalformedInput("source broke")

    with pytest.raises(MalformedInput, match="source broke"):
        client.load_image(broken())
    with pytest.raises(ImageNotFound):
        client.inspect_image(image.tag)
    client.list_images()  # the client is still usable


def test_garbage_load_reports_the_daemon_message(client: DaemonClient, daemon: Daemon) -> None:
    with pytest.raises(DaemonError) as caught:
        client.load_image([b"this is not a tar archive\n" * 100])
    message = str(caught.value)
    assert "\n" not in message and str(daemon.socket) in message
    if daemon.kind == "podman":  # HTTP 500 with {"message": ...}
        assert "HTTP 500" in message
        assert "payload does not match any of the supported image formats" in message
    else:  # HTTP 200 with {"errorDetail": ...} in the stream
        assert "archive/tar: invalid tar header" in message


def test_missing_image(client: DaemonClient) -> None:
    name = f"occystrap-test/missing-{uuid.uuid4().hex[:8]}:latest"
    expected = f"image {name} not found in the daemon at {client.socket_path}"
    with pytest.raises(ImageNotFound) as caught:
        client.inspect_image(name)
    assert str(caught.value) == expected
    with pytest.raises(ImageNotFound, match="not found in the daemon"):
        client.export_image(name)
    with pytest.raises(ImageNotFound, match="not found in the daemon"):
        client.tag_image(name, "occystrap-test/other", "x")
    with pytest.raises(ImageNotFound, match="not found in the daemon"):
        client.remove_image(name)


def test_export_platform_on_old_api(client: DaemonClient, image: BuiltImage) -> None:
    client.load_image(_chunks(image.path, CHUNK))
    with client.export_image(image.tag, platform=f"linux/{ARCH}") as reader:
        assert tarfile.open(fileobj=reader, mode="r|")  # native platform: exported
    other = "linux/s390x" if ARCH != "s390x" else "linux/amd64"
    with pytest.raises(InvalidOption, match="needs Engine API >= 1.48"):
        client.export_image(image.tag, platform=other)
    client.remove_image(image.tag)


# -- socket resolution and connection errors (no daemon needed) --------------------------------


def test_socket_resolution() -> None:
    assert resolve_socket(None, {}) == "/var/run/docker.sock"
    assert (
        resolve_socket(None, {"DOCKER_HOST": "unix:///run/podman/podman.sock"})
        == "/run/podman/podman.sock"
    )
    assert resolve_socket("/x.sock", {"DOCKER_HOST": "unix:///y.sock"}) == "/x.sock"
    assert resolve_socket("unix:///x.sock", {}) == "/x.sock"
    with pytest.raises(InvalidOption, match="only unix sockets"):
        resolve_socket(None, {"DOCKER_HOST": "tcp://127.0.0.1:2375"})
    with pytest.raises(InvalidOption, match="only unix sockets"):
        DaemonClient(environ={"DOCKER_HOST": "ssh://me@host"})


def test_missing_socket(tmp_path: Path) -> None:
    path = tmp_path / "nothing.sock"
    with DaemonClient(str(path)) as client, pytest.raises(DaemonError) as caught:
        client.inspect_image("busybox")
    assert str(caught.value) == (
        f"no Docker/Podman daemon socket at {path}"
        " (is the daemon running? set DOCKER_HOST or ?socket=)"
    )


def test_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "plain-file"
    path.write_text("")
    with (
        DaemonClient(str(path)) as client,
        pytest.raises(DaemonError, match="is not a unix socket"),
    ):
        client.list_images()


def test_connection_refused(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))  # bound, never listening: connect() gets ECONNREFUSED
        with DaemonClient(str(path)) as client, pytest.raises(DaemonError) as caught:
            client.list_images()
    assert (
        str(caught.value)
        == f"connection refused by the daemon socket {path} (is the daemon running?)"
    )


def test_permission_denied(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another uid")
    path = tmp_path / "private.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen()
        os.chmod(path, 0o600)
        os.chmod(tmp_path, 0o755)
        client = DaemonClient(str(path))
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: become nobody (no CAP_DAC_OVERRIDE), try to connect
            code = 1
            try:
                os.close(read_end)
                os.setgid(65534)
                os.setuid(65534)
                try:
                    client.list_images()
                    os.write(write_end, b"connected")
                except DaemonError as err:
                    os.write(write_end, str(err).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        client.close()
    assert os.waitstatus_to_exitcode(status) == 0
    assert message == (
        f"permission denied on the daemon socket {path} (run as root or as a member of the socket's group)"
    )


# -- a fake Engine API: what the lab daemons cannot show --------------------------------------


class _FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    api_version: str | None = "1.52"
    seen: list[str]
    path: str


class _FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FakeEngine

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        path = urlsplit(self.path).path
        version = self.server.api_version
        if path == "/_ping":
            self._reply(200, b"OK", {"Api-Version": version} if version else {})
        elif path == "/version":
            body = {"ApiVersion": "1.45", "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64"}
            self._reply(200, json.dumps(body).encode())
        elif path.endswith("/get"):
            self._reply(200, b"x" * (3 * CHUNK + 5), {"Content-Type": "application/x-tar"})
        else:
            self._reply(404, b'{"message":"page not found"}')

    def do_POST(self) -> None:  # /images/load, dockerd style: JSON lines separated by CRLF
        self.server.seen.append(self.path)
        self.server.seen.append(f"transfer-encoding: {self.headers.get('Transfer-Encoding')}")
        self.server.seen.append(f"content-type: {self.headers.get('Content-Type')}")
        received = 0
        while size := int(self.rfile.readline().strip(), 16):
            received += len(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        self.server.seen.append(f"received: {received}")
        lines = [
            {"stream": "Loaded image: a/b:1\n"},
            {"status": "Loading layer", "progressDetail": {"current": 1, "total": 2}},
            {"stream": "Loaded image ID: sha256:abcd\n"},
        ]
        self._reply(200, b"".join(json.dumps(x).encode() + b"\r\n" for x in lines))


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[_FakeEngine]:
    path = str(tmp_path / "fake.sock")
    server = _FakeEngine(path, _FakeHandler)
    server.seen, server.path = [], path
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_newer_daemon_is_capped_and_gets_platform(fake: _FakeEngine) -> None:
    with DaemonClient(fake.path) as client:
        assert client.api_version == "1.48"
        with client.export_image("busybox:latest", platform="linux/arm64/v8") as reader:
            assert len(reader.read(CHUNK)) == CHUNK
            assert len(reader.read()) == 2 * CHUNK + 5
        with pytest.raises(DaemonError, match="HTTP 404: page not found"):
            client.inspect_image("busybox")  # 404 "page not found" is not a missing image
    get = [p for p in fake.seen if "/get" in p][0]
    assert get.startswith("/v1.48/images/busybox:latest/get?")
    platform = json.loads(parse_qs(urlsplit(get).query)["platform"][0])
    assert platform == {"os": "linux", "architecture": "arm64", "variant": "v8"}


def test_load_streams_chunked_and_reads_names_and_ids(fake: _FakeEngine) -> None:
    body = io.BytesIO(b"t" * (2 * CHUNK + 7))
    with DaemonClient(fake.path) as client:
        assert client.load_image(body, quiet=False) == ["a/b:1", "sha256:abcd"]
    assert fake.seen[-4:] == [
        "/v1.48/images/load?quiet=0",
        "transfer-encoding: chunked",
        "content-type: application/x-tar",
        f"received: {2 * CHUNK + 7}",
    ]


def test_ping_without_header_falls_back_to_version(fake: _FakeEngine) -> None:
    fake.api_version = None
    with DaemonClient(fake.path) as client:
        assert client.api_version == "1.45"
    assert fake.seen[:2] == ["/_ping", "/version"]


def test_too_old_daemon(fake: _FakeEngine) -> None:
    fake.api_version = "1.12"
    with (
        DaemonClient(fake.path) as client,
        pytest.raises(DaemonError, match="needs at least 1.24"),
    ):
        client.list_images()
