"""docker:// as source and destination, through the CLI, against a real podman and dockerd.

The fixture image has five layers (busybox, a small file layer, an empty layer, another file
layer, the same empty layer again), so dockerd's lexical export with a forward-pointing
``layer.tar`` symlink and podman's ``<diffid>.tar`` files with ``manifest.json`` last are both
read. Judges: skopeo (``skopeo copy docker-archive:… oci:…`` checks every diff_id), the
config digest in the archive, and the image IDs and RepoTags the daemons report. Docker 25+
and containerd-store exports, which these daemons cannot produce, are served by a fake
Engine API from lab-built archives. The 1 GiB test measures the CLI's peak RSS.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import socketserver
import stat
import sys
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import images
from lab.archive import open_archive
from lab.daemon import Daemon
from lab.ocilayout import LayoutInfo, canonical_json
from lab.registry import Registry
from lab.tarspec import directory, file, write_layer_tar
from lab.tools import OccystrapRunner, skopeo
from occystrap.errors import DaemonError, ImageNotFound
from occystrap.transports.daemon.client import DaemonClient

PREFIX = f"occy-daemon-{uuid.uuid4().hex[:6]}"
MB = 1 << 20


# -- fixtures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    layout: LayoutInfo
    archive: Path  # docker-archive written by skopeo, RepoTag SOURCE_TAG
    tag: str


@pytest.fixture(scope="module")
def fixture_image(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    work = tmp_path_factory.mktemp("daemon-image")
    layers = images.busybox_layers() + [
        [directory("opt"), file("opt/a.txt", "hello\n")],
        [],
        [file("opt/b.txt", "b" * 5000)],
        [],
    ]
    layout = images.build_oci_layout(work / "layout", layers)
    tag = f"{PREFIX}/multi:v1"
    archive = images.to_docker_archive(layout, "latest", work / "multi.tar", tag)
    return Fixture(layout, archive, tag)


@pytest.fixture(scope="module")
def daemons(podman: Daemon, dockerd: Daemon, fixture_image: Fixture) -> dict[str, Daemon]:
    """Both daemons, each holding the fixture image as ``fixture_image.tag``."""
    for daemon in (podman, dockerd):
        with DaemonClient(str(daemon.socket)) as client, open(fixture_image.archive, "rb") as f:
            client.load_image(f)
            assert (
                client.inspect_image(fixture_image.tag)["Id"] == fixture_image.layout.config_digest
            )
    return {"podman": podman, "dockerd": dockerd}


def uri(daemon: Daemon, name: str) -> str:
    return f"docker://{name}?socket={daemon.socket}"


def inspect(daemon: Daemon, name: str) -> dict[str, Any]:
    with DaemonClient(str(daemon.socket)) as client:
        return client.inspect_image(name)


def image_ids(daemon: Daemon) -> set[str]:
    with DaemonClient(str(daemon.socket)) as client:
        return {i["Id"] for i in client.list_images()}


def remove(daemon: Daemon, *names: str) -> None:
    with DaemonClient(str(daemon.socket)) as client:
        for name in names:
            try:
                client.remove_image(name, force=True)
            except ImageNotFound:
                pass


def ok(run: OccystrapRunner, *args: str | Path) -> str:
    done = run(*args)
    assert done.returncode == 0, done.stderr.decode()
    return done.stderr.decode()


def one_line_error(
    run: OccystrapRunner, *args: str | Path, status: int = 1, env: dict[str, str] | None = None
) -> str:
    done = run(*args, env=env)
    err = done.stderr.decode()
    assert done.returncode == status, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("occystrap: error: "), err
    return err[len("occystrap: error: ") : -1]


def judge_archive(path: Path, layout: LayoutInfo, repo_tags: list[str], tmp: Path) -> None:
    """skopeo reads it and checks every diff_id; config bytes and RepoTags are as expected."""
    seen = json.loads(skopeo("inspect", f"docker-archive:{path}").stdout)
    assert seen["Layers"] == layout.diff_ids
    skopeo("copy", f"docker-archive:{path}", f"oci:{tmp / 'judged'}:x")
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = tar.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
    assert "sha256:" + hashlib.sha256(config).hexdigest() == layout.config_digest
    assert manifest[0]["RepoTags"] == repo_tags


PAIRS = [("podman", "dockerd"), ("dockerd", "podman")]


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("src,dst", PAIRS)
def test_daemon_to_tar_to_daemon(
    daemons: dict[str, Daemon],
    fixture_image: Fixture,
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
    src: str,
    dst: str,
) -> None:
    out = tmp_path / "out.tar"
    ok(run_occystrap, "process", uri(daemons[src], fixture_image.tag), f"tar://{out}")
    judge_archive(out, fixture_image.layout, [fixture_image.tag], tmp_path)

    name = f"{PREFIX}/via-tar-{src}:v2"
    ok(run_occystrap, "process", f"tar://{out}", uri(daemons[dst], name))
    info = inspect(daemons[dst], name)
    assert info["Id"] == fixture_image.layout.config_digest
    assert info["RootFS"]["Layers"] == fixture_image.layout.diff_ids
    remove(daemons[dst], name)


@pytest.mark.parametrize("src,dst", PAIRS)
def test_daemon_to_daemon(
    daemons: dict[str, Daemon],
    fixture_image: Fixture,
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
    src: str,
    dst: str,
) -> None:
    name = f"{PREFIX}/from-{src}:v3"
    temp = tmp_path / "temp"
    temp.mkdir()
    err = ok(
        run_occystrap, "--temp-dir", temp, "process", uri(daemons[src], fixture_image.tag),
        uri(daemons[dst], name),
    )  # fmt: skip
    assert f"loaded {name} into the daemon at {daemons[dst].socket}" in err
    assert list(temp.iterdir()) == []  # spooled layers are gone
    info = inspect(daemons[dst], name)
    assert info["Id"] == inspect(daemons[src], fixture_image.tag)["Id"]
    assert info["Id"] == fixture_image.layout.config_digest
    expected = name if dst == "dockerd" else f"localhost/{name}"
    assert expected in info["RepoTags"]
    # what was loaded exports again intact
    out = tmp_path / "again.tar"
    ok(run_occystrap, "process", uri(daemons[dst], name), f"tar://{out}")
    judge_archive(out, fixture_image.layout, [name], tmp_path)
    remove(daemons[dst], name)


def test_filtered_daemon_to_daemon(
    daemons: dict[str, Daemon],
    fixture_image: Fixture,
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
) -> None:
    """A rewritten layer (size unknown up front) is spooled by the sink, then loaded."""
    name = f"{PREFIX}/filtered:v1"
    src, dst = daemons["podman"], daemons["dockerd"]
    ok(
        run_occystrap,
        "process",
        uri(src, fixture_image.tag),
        uri(dst, name),
        "-f",
        "exclude:pattern=opt/b.txt",
    )
    info = inspect(dst, name)
    layers = info["RootFS"]["Layers"]
    original = fixture_image.layout.diff_ids
    assert len(layers) == 5 and layers[:3] == original[:3] and layers[4] == original[4]
    assert layers[3] != original[3]
    out = tmp_path / "filtered.tar"
    ok(run_occystrap, "process", uri(dst, name), f"tar://{out}")
    skopeo("copy", f"docker-archive:{out}", f"oci:{tmp_path / 'judged'}:x")
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = tar.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
        inner = tar.extractfile(manifest[0]["Layers"][3])
        assert inner is not None
        with tarfile.open(fileobj=inner) as layer:
            assert "opt/b.txt" not in layer.getnames()
    assert info["Id"] == "sha256:" + hashlib.sha256(config).hexdigest()
    remove(dst, name)


@pytest.mark.parametrize("kind", ["podman", "dockerd"])
def test_names_are_honoured(
    daemons: dict[str, Daemon],
    fixture_image: Fixture,
    run_occystrap: OccystrapRunner,
    kind: str,
) -> None:
    daemon = daemons[kind]
    short = f"{PREFIX}-names/app"
    cases = {  # given -> how the daemon lists it
        short: f"{short}:latest" if kind == "dockerd" else f"localhost/{short}:latest",
        f"127.0.0.1:5000/{PREFIX}/app:v1": f"127.0.0.1:5000/{PREFIX}/app:v1",
        f"docker.io/library/{PREFIX}-hub:x": (
            f"{PREFIX}-hub:x" if kind == "dockerd" else f"docker.io/library/{PREFIX}-hub:x"
        ),
    }
    for given, listed in cases.items():
        ok(run_occystrap, "process", uri(daemon, fixture_image.tag), uri(daemon, given))
        info = inspect(daemon, given if ":" in given.rsplit("/", 1)[-1] else f"{given}:latest")
        assert info["Id"] == fixture_image.layout.config_digest
        assert listed in info["RepoTags"], (given, info["RepoTags"])
    remove(daemon, *cases.values())


def test_daemon_to_ocidir_to_daemon(
    daemons: dict[str, Daemon],
    fixture_image: Fixture,
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
) -> None:
    layout = tmp_path / "layout"
    ok(
        run_occystrap,
        "process",
        uri(daemons["dockerd"], fixture_image.tag),
        f"ocidir://{layout}:v1",
    )
    config = json.loads(skopeo("inspect", "--config", f"oci:{layout}:v1").stdout)
    assert config["rootfs"]["diff_ids"] == fixture_image.layout.diff_ids
    skopeo("copy", f"oci:{layout}:v1", f"oci:{tmp_path / 'judged'}:x")  # blob digests checked
    name = f"{PREFIX}/via-ocidir:v1"
    ok(run_occystrap, "process", f"ocidir://{layout}:v1", uri(daemons["podman"], name))
    assert inspect(daemons["podman"], name)["Id"] == fixture_image.layout.config_digest
    remove(daemons["podman"], name)


def test_daemon_to_registry_to_daemon(
    daemons: dict[str, Daemon],
    fixture_image: Fixture,
    run_occystrap: OccystrapRunner,
    registry_plain: Registry,
) -> None:
    remote = f"registry://{registry_plain.host}/{PREFIX}/multi:v1?insecure=true"
    ok(run_occystrap, "process", uri(daemons["podman"], fixture_image.tag), remote)
    ref = registry_plain.ref(f"{PREFIX}/multi", "v1")
    config = json.loads(
        skopeo("inspect", "--config", *registry_plain.skopeo_args("plain"), ref).stdout
    )
    assert config["rootfs"]["diff_ids"] == fixture_image.layout.diff_ids
    name = f"{PREFIX}/via-registry:v1"
    ok(run_occystrap, "process", remote, uri(daemons["dockerd"], name))
    assert inspect(daemons["dockerd"], name)["Id"] == fixture_image.layout.config_digest
    remove(daemons["dockerd"], name)


def test_source_platform(
    daemons: dict[str, Daemon],
    fixture_image: Fixture,
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
) -> None:
    source = uri(daemons["dockerd"], fixture_image.tag)
    ok(run_occystrap, "process", f"{source}&platform=linux/amd64", f"tar://{tmp_path / 'a.tar'}")
    err = one_line_error(
        run_occystrap, "process", f"{source}&platform=linux/s390x", f"tar://{tmp_path / 'b.tar'}",
        status=2,
    )  # fmt: skip
    assert "needs Engine API >= 1.48" in err
    assert not (tmp_path / "b.tar").exists()


# -- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["podman", "dockerd"])
def test_missing_image(
    daemons: dict[str, Daemon], run_occystrap: OccystrapRunner, tmp_path: Path, kind: str
) -> None:
    name = f"{PREFIX}/missing:v1"
    err = one_line_error(
        run_occystrap, "process", uri(daemons[kind], name), f"tar://{tmp_path / 'x.tar'}"
    )
    assert err == f"image {name} not found in the daemon at {daemons[kind].socket}"
    assert list(tmp_path.iterdir()) == []


def test_no_daemon(fixture_image: Fixture, run_occystrap: OccystrapRunner, tmp_path: Path) -> None:
    nothing = tmp_path / "nothing.sock"
    expected = f"no Docker/Podman daemon socket at {nothing} (is the daemon running? set DOCKER_HOST or ?socket=)"
    err = one_line_error(
        run_occystrap, "process", f"docker://a/b:c?socket={nothing}", f"tar://{tmp_path / 'x.tar'}"
    )
    assert err == expected
    err = one_line_error(
        run_occystrap,
        "process",
        f"tar://{fixture_image.archive}",
        f"docker://a/b:c?socket={nothing}",
    )
    assert err == expected
    err = one_line_error(run_occystrap, "process", "docker://a/b:c", "tar://x.tar", env={"DOCKER_HOST": f"unix://{nothing}"})  # fmt: skip
    assert err == expected


def _cli_as_nobody(args: list[str]) -> tuple[int, str]:
    """Run the CLI's ``main`` in a forked child that became uid/gid 65534 (the interpreter
    lives under /root, which nobody cannot read, so the child must not exec)."""
    from occystrap.cli.main import main
    from occystrap.transports.daemon import sink, source  # noqa: F401 - imported while root
    from occystrap.transports.dockerarchive import sink as _s  # noqa: F401
    from occystrap.transports.dockerarchive import source as _t  # noqa: F401

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            os.close(read_end)
            sys.stderr = open(write_end, "w")
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.chdir("/")
            try:
                main(args)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        err = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


def test_socket_without_permission(
    daemons: dict[str, Daemon], fixture_image: Fixture, request: pytest.FixtureRequest
) -> None:
    """uid 65534 reaches dockerd's socket through a hard link in an open directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child as uid 65534")
    sock = daemons["dockerd"].socket
    assert not stat.S_IMODE(sock.stat().st_mode) & 0o006, "dockerd's socket is open to everyone"
    shared = Path(tempfile.mkdtemp(prefix="occy-perm-", dir="/tmp"))  # every parent searchable
    request.addfinalizer(lambda: shutil.rmtree(shared))
    shared.chmod(0o755)
    linked = shared / "docker.sock"
    os.link(sock, linked)
    shutil.copy(fixture_image.archive, shared / "image.tar")
    (shared / "image.tar").chmod(0o644)
    expected = (
        f"occystrap: error: permission denied on the daemon socket {linked}"
        " (run as root or as a member of the socket's group)\n"
    )
    for args in (
        [f"docker://{fixture_image.tag}?socket={linked}", "tar:///dev/null"],
        [f"tar://{shared / 'image.tar'}", f"docker://a/b:c?socket={linked}"],
    ):
        status, err = _cli_as_nobody(["-q", "process", *args])
        assert (status, err) == (1, expected)


def _dangling_hardlink_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        link = tarfile.TarInfo("etc/dangling")
        link.type = tarfile.LNKTYPE
        link.linkname = "no/such/file/anywhere"
        tar.addfile(link)
    return buf.getvalue()


def _bad_layer_archive(path: Path, tag: str, second_layer_lies: bool) -> str:
    """busybox, then a second layer that the daemon must refuse (a well-formed tar whose
    hard link names a file that exists nowhere) or whose bytes do not match the config's
    diff_id (occystrap must refuse after sending layer 0)."""
    busybox = images.busybox_layers()[0]
    good = path.parent / "good-layer.tar"
    diff_good = write_layer_tar(busybox, good)
    junk = _dangling_hardlink_tar()
    diff_junk = "sha256:" + hashlib.sha256(junk).hexdigest()
    claimed = "sha256:" + "0" * 64 if second_layer_lies else diff_junk
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_good, claimed]},
        }
    )
    config_hex = hashlib.sha256(config).hexdigest()
    with open_archive(path) as ar:
        ar.file("l0/layer.tar", good)
        ar.data("l1/layer.tar", junk)
        ar.data(f"{config_hex}.json", config)
        ar.json(
            "manifest.json",
            [
                {
                    "Config": f"{config_hex}.json",
                    "RepoTags": [tag],
                    "Layers": ["l0/layer.tar", "l1/layer.tar"],
                }
            ],
        )
    return f"sha256:{config_hex}"


@pytest.mark.parametrize("kind", ["podman", "dockerd"])
def test_daemon_refuses_the_image(
    daemons: dict[str, Daemon], run_occystrap: OccystrapRunner, tmp_path: Path, kind: str
) -> None:
    name = f"{PREFIX}/refused-{kind}:v1"
    archive = tmp_path / "bad.tar"
    image_id = _bad_layer_archive(archive, name, second_layer_lies=False)
    err = one_line_error(run_occystrap, "process", f"tar://{archive}", uri(daemons[kind], name))
    assert f"the daemon at {daemons[kind].socket}" in err
    if kind == "podman":
        assert "HTTP 500" in err
    else:
        assert "failed to load the image" in err
    assert image_id not in image_ids(daemons[kind])


@pytest.mark.parametrize("kind", ["podman", "dockerd"])
def test_abort_loads_nothing(
    daemons: dict[str, Daemon], run_occystrap: OccystrapRunner, tmp_path: Path, kind: str
) -> None:
    """Layer 0 is already in the daemon's hands when layer 1 fails verification."""
    name = f"{PREFIX}/aborted-{kind}:v1"
    archive = tmp_path / "lying.tar"
    image_id = _bad_layer_archive(archive, name, second_layer_lies=True)
    before = image_ids(daemons[kind])
    err = one_line_error(run_occystrap, "process", f"tar://{archive}", uri(daemons[kind], name))
    assert err.startswith("digest mismatch for layer 1"), err
    assert image_ids(daemons[kind]) == before
    assert image_id not in before
    with pytest.raises(ImageNotFound):
        inspect(daemons[kind], name)
    with DaemonClient(str(daemons[kind].socket)) as client:
        client.list_images()  # the daemon is fine


def test_sink_checks_the_daemon_first(fixture_image: Fixture, tmp_path: Path) -> None:
    from occystrap.transports.base import RunContext
    from occystrap.transports.daemon.options import DaemonSinkOptions
    from occystrap.transports.daemon.sink import open_sink

    with pytest.raises(DaemonError, match="no Docker/Podman daemon socket"):
        open_sink("a/b:c", DaemonSinkOptions(socket=str(tmp_path / "none.sock")), RunContext())


def test_reference_parsing() -> None:
    from occystrap.errors import InvalidReference
    from occystrap.transports.daemon.sink import docker_normal
    from occystrap.transports.daemon.source import parse_target

    assert parse_target("busybox") == ("busybox:latest", "busybox", "latest")
    assert parse_target("127.0.0.1:5000/a/b") == (
        "127.0.0.1:5000/a/b:latest",
        "127.0.0.1:5000/a/b",
        "latest",
    )
    assert parse_target("a/b:v1") == ("a/b:v1", "a/b", "v1")
    digest = "sha256:" + "a" * 64
    assert parse_target(f"a/b@{digest}") == (f"a/b@{digest}", "a/b", None)
    assert parse_target(digest) == (digest, None, None)
    assert parse_target("0123456789ab") == ("0123456789ab", None, None)
    for bad in ("", " busybox", "a b", "a/:x"):
        with pytest.raises(InvalidReference):
            parse_target(bad)
    assert docker_normal("docker.io/library/busybox:latest") == "busybox:latest"
    assert docker_normal("docker.io/team/app:v1") == "team/app:v1"
    assert docker_normal("localhost/team/app:v1") == "localhost/team/app:v1"
    assert docker_normal("team/app:v1") == "team/app:v1"


# -- export formats these daemons do not write (fake Engine API) ------------------------------


class _Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    api = "1.41"
    inspect: dict[str, Any]
    archive: Path


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Engine

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/_ping", "/version"):
            body = (
                b"OK" if path == "/_ping" else json.dumps({"ApiVersion": self.server.api}).encode()
            )
            self.send_response(200)
            self.send_header("Api-Version", self.server.api)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path.endswith("/json"):
            body = json.dumps(self.server.inspect).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path.endswith("/get"):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("Content-Length", str(self.server.archive.stat().st_size))
            self.end_headers()
            with open(self.server.archive, "rb") as f:
                shutil.copyfileobj(f, self.wfile, MB)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[Callable[[Path, dict[str, Any], str], Path]]:
    servers: list[_Engine] = []

    def start(archive: Path, inspect: dict[str, Any], api: str = "1.41") -> Path:
        path = tmp_path / f"fake-{len(servers)}.sock"
        server = _Engine(str(path), _Handler)
        server.archive, server.inspect, server.api = archive, inspect, api
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return path

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("flavour", ["docker25", "containerd", "containerd-descriptor"])
def test_other_export_formats(
    fixture_image: Fixture,
    fake_engine: Callable[[Path, dict[str, Any], str], Path],
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
    flavour: str,
) -> None:
    layout = fixture_image.layout
    archive = tmp_path / "export.tar"
    tag = f"{PREFIX}/fmt:v1"
    inspect_info: dict[str, Any] = {
        "RepoTags": [tag],
        "RootFS": {"Type": "layers", "Layers": layout.diff_ids},
    }
    api = "1.41"
    if flavour == "docker25":
        images.docker_save_oci(layout, archive, [tag])
        inspect_info["Id"] = layout.config_digest
    else:  # containerd's store: Id names the (nested) index, not the config
        images.docker_save_containerd(layout, archive, [tag])
        with tarfile.open(archive) as tar:
            index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        inspect_info["Id"] = index["manifests"][0]["digest"]
        if flavour == "containerd-descriptor":
            api = "1.48"
            inspect_info["Descriptor"] = {
                k: index["manifests"][0][k] for k in ("mediaType", "digest", "size")
            }
    sock = fake_engine(archive, inspect_info, api)
    out = tmp_path / "out.tar"
    ok(run_occystrap, "process", f"docker://{tag}?socket={sock}", f"tar://{out}")
    judge_archive(out, layout, [tag], tmp_path)


def test_export_that_does_not_match_inspect(
    fixture_image: Fixture,
    fake_engine: Callable[[Path, dict[str, Any], str], Path],
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
) -> None:
    """The daemon describes one image and sends another: refused, one line."""
    other = images.build_oci_layout(tmp_path / "other", [[file("x", "x")]])
    archive = images.docker_save_oci(other, tmp_path / "export.tar", ["lab/x:v1"])
    inspect_info = {
        "Id": fixture_image.layout.config_digest,
        "RootFS": {"Layers": fixture_image.layout.diff_ids},
    }
    sock = fake_engine(archive, inspect_info, "1.41")
    err = one_line_error(
        run_occystrap, "process", f"docker://lab/x:v1?socket={sock}", f"tar://{tmp_path / 'o.tar'}"
    )
    assert "does not hold the config" in err or "another image" in err, err
    assert not (tmp_path / "o.tar").exists()


def test_corrupt_layer_in_export(
    fixture_image: Fixture,
    fake_engine: Callable[[Path, dict[str, Any], str], Path],
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
) -> None:
    """One byte of layer 1 flipped in transit: the diff_id check refuses it."""
    layout = fixture_image.layout
    archive = images.docker_save_oci(layout, tmp_path / "export.tar", ["lab/x:v1"])
    with tarfile.open(archive) as tar:
        body = tar.getmember(f"blobs/sha256/{layout.diff_ids[1].split(':')[1]}").offset_data
    with open(archive, "r+b") as f:
        f.seek(body + 600)
        byte = f.read(1)
        f.seek(body + 600)
        f.write(bytes([byte[0] ^ 0xFF]))
    inspect_info = {"Id": layout.config_digest, "RootFS": {"Layers": layout.diff_ids}}
    sock = fake_engine(archive, inspect_info, "1.41")
    err = one_line_error(
        run_occystrap, "process", f"docker://lab/x:v1?socket={sock}", f"tar://{tmp_path / 'o.tar'}"
    )
    assert err.startswith("digest mismatch for layer 1"), err
    assert not (tmp_path / "o.tar").exists()


def test_source_by_image_id(
    daemons: dict[str, Daemon],
    fixture_image: Fixture,
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
) -> None:
    """An image ID has no name of its own: the daemon's first RepoTag is recorded."""
    out = tmp_path / "by-id.tar"
    image_id = fixture_image.layout.config_digest
    first = inspect(daemons["dockerd"], image_id)["RepoTags"][0]
    ok(run_occystrap, "process", uri(daemons["dockerd"], image_id), f"tar://{out}")
    judge_archive(out, fixture_image.layout, [first], tmp_path)


# -- memory ----------------------------------------------------------------------------------


#: 512 MiB: 3.4 times the memory bound, so a layer held whole cannot pass; the daemon adds
#: about 60 s per GiB to the suite (1 GiB layers are also pushed through tar:// alone, in
#: tests/transports/test_dockerarchive.py)
BIG_LAYER = 512 << 20


@pytest.mark.slow
def test_big_layer_through_podman_in_bounded_memory(
    podman: Daemon, peak_rss: Callable[..., int], tmp_path: Path
) -> None:
    big = images.big_layer_file(tmp_path / "big-layer.tar", BIG_LAYER)
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [big.diff_id]},
            "history": [{"created_by": "big"}],
        }
    )
    config_hex = hashlib.sha256(config).hexdigest()
    image_id = f"sha256:{config_hex}"
    name1, name2 = f"{PREFIX}/big:1", f"{PREFIX}/big:2"
    hand_made = tmp_path / "hand-made.tar"
    with open_archive(hand_made) as ar:
        ar.file("big/layer.tar", big.path)
        ar.data(f"{config_hex}.json", config)
        ar.json(
            "manifest.json",
            [{"Config": f"{config_hex}.json", "RepoTags": [name1], "Layers": ["big/layer.tar"]}],
        )
    big.path.unlink()
    try:
        with DaemonClient(str(podman.socket)) as client, open(hand_made, "rb") as f:
            client.load_image(f)
        hand_made.unlink()
        temp = tmp_path / "temp"
        temp.mkdir()
        out = tmp_path / "out.tar"
        cli = [sys.executable, "-m", "occystrap", "-q", "--temp-dir", str(temp), "process"]
        rss_save = peak_rss([*cli, uri(podman, name1), f"tar://{out}"])
        assert list(temp.iterdir()) == []
        assert out.stat().st_size > BIG_LAYER
        rss_load = peak_rss([*cli, f"tar://{out}", uri(podman, name2)])
        assert inspect(podman, name2)["Id"] == image_id
        print(f"peak RSS: save {rss_save / MB:.0f} MiB, load {rss_load / MB:.0f} MiB")
        assert rss_save < 150 * MB, rss_save
        assert rss_load < 150 * MB, rss_load
    finally:
        remove(podman, name1, name2)
        for leftover in tmp_path.glob("*.tar"):
            leftover.unlink()  # keep gigabytes out of pytest's kept temp dirs
