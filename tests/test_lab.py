"""The lab itself works: registries, daemons, schemas, fixture images and hostile archives."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lab import INITIAL_NET_IFACES, images, schemas
from lab.daemon import Daemon
from lab.dockerd import start_dockerd
from lab.edgecase import EXPECT, LONG_NAME, UNICODE_NAME, VERY_LONG_NAME, check_rootfs
from lab.hostile import ESCAPE_DIR, HOSTILE_KINDS, SENTINEL, hostile_layer
from lab.ocilayout import LAYER_TYPES, LayoutInfo
from lab.procs import mounts_under, pid_alive
from lab.registry import MODES, Registry, http_get, start_registry
from lab.rss import measure
from lab.tarspec import write_layer_tar
from lab.tools import OccystrapRunner, require, run, skopeo, umoci

# --- registries -------------------------------------------------------------------------


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("mode", MODES)
def test_registry_push_and_serve_back(
    mode: str, request: pytest.FixtureRequest, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    reg: Registry = request.getfixturevalue("registry_" + mode.replace("-", "_"))
    skopeo("copy", *reg.skopeo_args("dest"), busybox_layout.ref, reg.ref("lab/busybox", "v1"))
    raw = skopeo("inspect", "--raw", *reg.skopeo_args("plain"), reg.ref("lab/busybox", "v1")).stdout
    assert hashlib.sha256(raw.encode()).hexdigest() == busybox_layout.manifest_digest[7:]
    info = json.loads(
        skopeo("inspect", *reg.skopeo_args("plain"), reg.ref("lab/busybox", "v1")).stdout
    )
    assert info["Layers"] == busybox_layout.layer_digests
    # Pull it back into an OCI layout: skopeo checks every blob digest on the way.
    skopeo(
        "copy", *reg.skopeo_args("src"), reg.ref("lab/busybox", "v1"), f"oci:{tmp_path / 'back'}:v1"
    )
    assert (tmp_path / "back" / "blobs" / "sha256" / busybox_layout.config_digest[7:]).exists()
    status, headers, _ = http_get(f"{reg.url}/v2/", reg.ssl_context())
    assert status == (200 if mode in ("plain", "tls") else 401)
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"


@pytest.mark.parametrize("mode", ["auth", "tls-auth"])
def test_basic_auth_registry_refuses_anonymous_and_bad_password(
    mode: str, request: pytest.FixtureRequest
) -> None:
    reg: Registry = request.getfixturevalue("registry_" + mode.replace("-", "_"))
    status, headers, _ = http_get(f"{reg.url}/v2/", reg.ssl_context())
    assert status == 401 and headers["Www-Authenticate"] == 'Basic realm="lab-realm"'
    assert http_get(f"{reg.url}/v2/", reg.ssl_context(), "testuser:wrong")[0] == 401
    assert http_get(f"{reg.url}/v2/", reg.ssl_context(), f"{reg.creds}")[0] == 200
    res = skopeo(
        "inspect", *reg.skopeo_args("plain", anonymous=True), reg.ref("lab/nothing"), check=False
    )
    assert res.returncode != 0 and "authentication required" in res.stderr


def test_tls_registry_needs_the_lab_ca(registry_tls: Registry) -> None:
    res = skopeo("inspect", "--tls-verify=true", registry_tls.ref("lab/busybox"), check=False)
    assert res.returncode != 0 and "x509" in res.stderr
    assert registry_tls.ca_file and registry_tls.certs_d
    assert (registry_tls.certs_d / "ca.crt").read_bytes() == registry_tls.ca_file.read_bytes()
    for host in ("127.0.0.1", "localhost"):
        url = f"https://{host}:{registry_tls.host.split(':')[1]}/v2/"
        assert http_get(url, registry_tls.ssl_context())[0] == 200
    with pytest.raises(urllib.error.URLError):
        http_get(f"{registry_tls.url}/v2/", ssl.create_default_context())


def test_token_registry_flow(registry_token: Registry, busybox_layout: LayoutInfo) -> None:
    reg = registry_token
    status, headers, _ = http_get(f"{reg.url}/v2/")
    assert status == 401
    assert headers["Www-Authenticate"] == f'Bearer realm="{reg.token_url}",service="lab-registry"'
    # Anonymous push is refused, authenticated push works, anonymous pull works.
    res = skopeo(
        "copy",
        *reg.skopeo_args("dest", anonymous=True),
        busybox_layout.ref,
        reg.ref("lab/tok", "anon"),
        check=False,
    )
    assert res.returncode != 0 and "denied" in res.stderr
    skopeo("copy", *reg.skopeo_args("dest"), busybox_layout.ref, reg.ref("lab/tok", "v1"))
    skopeo("inspect", *reg.skopeo_args("plain", anonymous=True), reg.ref("lab/tok", "v1"))
    # The token server: bad credentials -> 401; tokens are RS256 JWTs signed by the x5c cert.
    scope = "scope=repository:lab/tok:pull,push&scope=repository:a:b:c:pull"
    assert http_get(f"{reg.token_url}?service=lab-registry&{scope}", auth="testuser:nope")[0] == 401
    for auth, actions in ((reg.creds, ["pull", "push"]), (None, ["pull"])):
        status, _, body = http_get(f"{reg.token_url}?service=lab-registry&{scope}", auth=auth)
        assert status == 200
        token = json.loads(body)["token"]
        head_b64, claims_b64, sig_b64 = token.split(".")
        header, claims = json.loads(_unb64(head_b64)), json.loads(_unb64(claims_b64))
        assert header["alg"] == "RS256"
        assert claims["iss"] == "lab-issuer" and claims["aud"] == "lab-registry"
        assert claims["access"][0] == {"type": "repository", "name": "lab/tok", "actions": actions}
        assert claims["access"][1]["name"] == "a:b:c"
        cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(
            _unb64(sig_b64),
            f"{head_b64}.{claims_b64}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )


def test_registry_restart_reuses_its_directory(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    first = start_registry("plain", tmp_path / "reg")
    try:
        skopeo("copy", *first.skopeo_args("dest"), busybox_layout.ref, first.ref("lab/keep", "v1"))
    finally:
        first.stop()
    assert not first.services[0].alive() and not (tmp_path / "reg" / "registry.pid").exists()
    second = start_registry("plain", tmp_path / "reg")
    try:
        out = skopeo("inspect", *second.skopeo_args("plain"), second.ref("lab/keep", "v1")).stdout
        assert json.loads(out)["Digest"] == busybox_layout.manifest_digest
    finally:
        second.stop()
        second.stop()  # idempotent


# --- daemons ----------------------------------------------------------------------------


def _load_and_run(daemon: Daemon, archive: Path, cli: list[str]) -> None:
    assert daemon.ping()
    resp = daemon.load(archive)
    assert resp.status == 200, resp.body[:500]
    assert "Loaded image" in resp.body.decode(), resp.body[:500]
    tags = [t for image in daemon.images() for t in image.get("RepoTags") or []]
    assert any(t.endswith("lab/busybox:latest") for t in tags), tags
    inspect = daemon.request("GET", "/v1.41/images/lab/busybox:latest/json")
    assert inspect.status == 200
    out = run(
        [
            *cli,
            "run",
            "--rm",
            "--network",
            "none",
            "lab/busybox:latest",
            "/bin/busybox",
            "echo",
            "hello-lab",
        ],
        env={**os.environ, **daemon.env},
    )
    assert out.stdout.strip() == "hello-lab"


def test_podman_serves_the_docker_api(podman: Daemon, busybox_archive: Path) -> None:
    assert podman.request("GET", "/_ping").headers.get("Libpod-Api-Version")
    _load_and_run(podman, busybox_archive, [require("podman")])
    assert (podman.workdir / "storage" / "vfs").is_dir()  # the private store was used


def test_dockerd_serves_the_docker_api(dockerd: Daemon, busybox_archive: Path) -> None:
    assert dockerd.request("GET", "/_ping").headers.get("Server", "").startswith("Docker/")
    _load_and_run(dockerd, busybox_archive, [require("docker")])
    assert (dockerd.workdir / "data" / "vfs").is_dir()


@pytest.mark.parametrize("name", ["podman", "dockerd"])
def test_daemons_pull_from_the_lab_registry(
    name: str, request: pytest.FixtureRequest, registry_plain: Registry, busybox_layout: LayoutInfo
) -> None:
    daemon: Daemon = request.getfixturevalue(name)
    reg = registry_plain
    skopeo("copy", *reg.skopeo_args("dest"), busybox_layout.ref, reg.ref("lab/pullme", "v1"))
    resp = daemon.request("POST", f"/v1.41/images/create?fromImage={reg.host}/lab/pullme&tag=v1")
    assert resp.status == 200
    assert not [m for m in resp.json_lines() if "error" in m], resp.body[-500:]
    inspect = daemon.request("GET", f"/v1.41/images/{reg.host}/lab/pullme:v1/json")
    assert inspect.status == 200
    assert inspect.json()["RootFS"]["Layers"] == busybox_layout.diff_ids


def test_daemons_created_no_network_interface(podman: Daemon, dockerd: Daemon) -> None:
    added = set(os.listdir("/sys/class/net")) - INITIAL_NET_IFACES
    assert not added, f"the lab created network interfaces: {sorted(added)}"


def test_dockerd_cleanup_after_sigkill(tmp_path: Path) -> None:
    """Even when dockerd dies hard, stop() kills its containerd and removes its mounts."""
    daemon = start_dockerd(tmp_path / "d")
    containerd_pid = int((daemon.workdir / "exec" / "containerd" / "containerd.pid").read_text())
    try:
        assert mounts_under(daemon.workdir), "dockerd should bind-mount its data root"
        os.kill(daemon.service.pid, signal.SIGKILL)
        daemon.service.proc.wait(10)
    finally:
        daemon.stop()
    assert not pid_alive(containerd_pid)
    assert mounts_under(daemon.workdir) == []
    daemon.stop()  # idempotent


# --- schemas ----------------------------------------------------------------------------


def test_schemas_accept_the_fixtures(
    busybox_layout: LayoutInfo, edge_layout: LayoutInfo, tmp_path: Path
) -> None:
    for info in (busybox_layout, edge_layout):
        schemas.validate("manifest", info.blob(info.manifest_digest).read_bytes())
        schemas.validate("config", info.blob(info.config_digest))
        schemas.validate("index", info.path / "index.json")
        schemas.validate("layout", info.path / "oci-layout")
    run([require("runc"), "spec"], cwd=tmp_path)
    schemas.validate("runtime", tmp_path / "config.json")
    schemas.validate("runtime", Path(schemas.SPECS / "runtime-spec" / "minimal-for-start.json"))


@pytest.mark.parametrize(
    ("kind", "doc", "needle"),
    [
        (
            "manifest",
            {
                "schemaVersion": 2,
                "config": {"mediaType": "a/b", "size": 1, "digest": "sha256:" + "a" * 64},
            },
            "'layers' is a required property",
        ),
        (
            "manifest",
            {"schemaVersion": 3, "layers": [{}], "config": {}},
            "schemaVersion: 3 is greater than the maximum",
        ),
        (
            "index",
            {"schemaVersion": 2, "manifests": [{"mediaType": "a/b", "size": "1", "digest": "x"}]},
            "manifests/0/size",
        ),
        (
            "config",
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": "x"}},
            "rootfs/diff_ids",
        ),
        ("layout", {"imageLayoutVersion": 1}, "imageLayoutVersion: 1 is not of type 'string'"),
        ("runtime", {"ociVersion": "1.0.2", "root": {"path": 7}}, "root/path"),
    ],
)
def test_schemas_reject_broken_documents(kind: Any, doc: object, needle: str) -> None:
    with pytest.raises(AssertionError, match="schema error") as err:
        schemas.validate(kind, json.dumps(doc).encode())
    assert needle in str(err.value)


# --- fixture images ---------------------------------------------------------------------


def test_layouts_are_valid_and_deterministic(
    busybox_layout: LayoutInfo, edge_layout: LayoutInfo, tmp_path: Path
) -> None:
    for info in (busybox_layout, edge_layout):
        out = run([require("oci-image-tool"), "validate", "--type", "image", info.path])
        assert "Validation succeeded" in out.stdout + out.stderr
    again = images.build_oci_layout(tmp_path / "again", images.edge_case_layers())
    assert again.manifest_digest == edge_layout.manifest_digest
    assert again.diff_ids == edge_layout.diff_ids


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_other_layer_compressions(compression: Any, tmp_path: Path) -> None:
    info = images.build_oci_layout(
        tmp_path / "l", images.edge_case_layers(), tag="c", compression=compression
    )
    assert set(info.layer_media_types) == {LAYER_TYPES[compression]}
    skopeo("copy", info.ref, f"oci:{tmp_path / 'copy'}:c")  # skopeo checks every digest
    for i, diff_id in enumerate(info.diff_ids):
        plain = images.open_layer(info, i, tmp_path / f"{i}.tar")
        assert "sha256:" + hashlib.sha256(plain.read_bytes()).hexdigest() == diff_id


def test_edge_layout_unpacks_as_the_spec_says(edge_layout: LayoutInfo, tmp_path: Path) -> None:
    umoci("unpack", "--image", f"{edge_layout.path}:latest", tmp_path / "bundle")
    rootfs = tmp_path / "bundle" / "rootfs"
    assert check_rootfs(rootfs) == []
    # The checker can fail: break three things and expect three complaints.
    (rootfs / "opt/links/hard1").unlink()
    (rootfs / "opt/links/hard1").write_text("link target\n")
    (rootfs / "etc/debian_version").write_text("12\n")
    (rootfs / "opt/perm/suid").chmod(0o755)
    problems = check_rootfs(rootfs)
    assert len(problems) == 3, problems
    assert any(p.startswith("opt/links/hard1: not a hard link") for p in problems)
    schemas.validate("runtime", tmp_path / "bundle" / "config.json")


def test_edge_layers_hold_the_edge_cases(edge_layout: LayoutInfo, tmp_path: Path) -> None:
    members: list[tarfile.TarInfo] = []
    for i in range(3):
        with tarfile.open(images.open_layer(edge_layout, i, tmp_path / f"{i}.tar")) as tar:
            members += tar.getmembers()
    by_name = {m.name: m for m in members}
    assert (
        by_name["opt/ids/big-uid"].uid == 3_000_000
        and by_name["opt/ids/big-uid"].pax_headers["uid"] == "3000000"
    )
    assert (
        by_name["opt/x/cap"]
        .pax_headers["SCHILY.xattr.security.capability"]
        .encode("utf-8", "surrogateescape")
        == EXPECT.xattrs["opt/x/cap"]["security.capability"]
    )
    assert "SCHILY.xattr.user.lab.binary" in by_name["opt/x/xattr.txt"].pax_headers
    assert len(LONG_NAME) > 100 and len(VERY_LONG_NAME.encode()) > 255
    assert {LONG_NAME, VERY_LONG_NAME, UNICODE_NAME, "./opt/dot-prefixed.txt"} <= set(by_name)
    assert by_name["opt/special/fifo"].isfifo() and by_name["opt/perm/suid"].mode == 0o4755
    assert by_name["opt/links/to-lower"].islnk() and by_name["opt/links/dangling"].issym()
    names = [m.name for m in members]
    assert names.index("opt/late/child.txt") < names.index("opt/late")
    assert {
        "etc/skel/.wh..wh..opq",
        "usr/lib/.wh..wh..opq",
        "opt/.wh.gone-dir",
        "deep/a/b/c/d/.wh.e.txt",
    } <= set(names)
    assert names.index("opt/opq/c") < names.index("opt/opq/.wh..wh..opq")


def _diff_ids_of_copy(layout: Path) -> list[str]:
    """diff_ids of the image skopeo copied into ``layout`` (skopeo re-serialises the config)."""
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    diff_ids: list[str] = config["rootfs"]["diff_ids"]
    return diff_ids


FLAVOURS: dict[str, Callable[[LayoutInfo, Path], Path]] = {
    "skopeo": lambda info, out: images.to_docker_archive(info, info.tag, out),
    "legacy": lambda info, out: images.docker_save_legacy(info, out, ["lab/busybox:latest"]),
    "legacy-gzip-layers": lambda info, out: images.docker_save_legacy(
        info, out, ["lab/busybox:latest"], gzip_layers=True
    ),
    "legacy-untagged": lambda info, out: images.docker_save_legacy(info, out, ()),
    "docker25": lambda info, out: images.docker_save_oci(info, out, ["lab/busybox:latest"]),
    "containerd": lambda info, out: images.docker_save_containerd(
        info, out, ["lab/busybox:latest"]
    ),
    "podman": lambda info, out: images.docker_save_podman(info, out, ["lab/busybox:latest"]),
}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_docker_save_flavours_read_by_skopeo(
    flavour: str, edge_layout: LayoutInfo, tmp_path: Path
) -> None:
    archive = FLAVOURS[flavour](edge_layout, tmp_path / "save.tar")
    inspected = json.loads(skopeo("inspect", f"docker-archive:{archive}").stdout)
    assert inspected["Layers"] and len(inspected["Layers"]) == 3
    # Copying to an OCI layout makes skopeo check every layer against the config's diff_ids.
    skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'copy'}:x")
    assert _diff_ids_of_copy(tmp_path / "copy") == edge_layout.diff_ids


@pytest.mark.parametrize("flavour", ["legacy", "docker25", "containerd", "podman"])
def test_docker_save_flavours_load_into_dockerd(
    flavour: str, dockerd: Daemon, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    archive = FLAVOURS[flavour](busybox_layout, tmp_path / "save.tar")
    resp = dockerd.load(archive)
    assert resp.status == 200 and b"Loaded image" in resp.body, resp.body[:500]


def test_multi_pre110_and_gzip_wrapped_archives(
    busybox_layout: LayoutInfo, edge_layout: LayoutInfo, tmp_path: Path
) -> None:
    multi = images.docker_save_multi(
        [(busybox_layout, ["lab/bb:1", "lab/bb:2"]), (edge_layout, ["lab/edge:1"])],
        tmp_path / "multi.tar",
    )
    expected = [
        ("lab/bb:2", busybox_layout.diff_ids),
        ("lab/edge:1", edge_layout.diff_ids),
        ("@1", edge_layout.diff_ids),
    ]
    for n, (ref, diff_ids) in enumerate(expected):
        skopeo("copy", f"docker-archive:{multi}:{ref}", f"oci:{tmp_path / f'm{n}'}:x")
        assert _diff_ids_of_copy(tmp_path / f"m{n}") == diff_ids
    pre = images.docker_save_pre110(busybox_layout, tmp_path / "pre.tar")
    with tarfile.open(pre) as tar:
        names = tar.getnames()
    assert "repositories" in names and "manifest.json" not in names
    assert (
        sum(n.endswith("/layer.tar") for n in names) == 1
        and sum(n.endswith("/json") for n in names) == 1
    )
    res = skopeo("inspect", f"docker-archive:{pre}", check=False)
    assert res.returncode != 0 and "manifest.json" in res.stderr
    legacy = images.docker_save_legacy(busybox_layout, tmp_path / "legacy.tar")
    wrapped = images.gzip_archive(legacy, tmp_path / "legacy.tar.gz")
    assert wrapped.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(wrapped.read_bytes()) == legacy.read_bytes()


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_layers_hold_the_intended_entries(kind: str, tmp_path: Path) -> None:
    write_layer_tar(hostile_layer(kind), tmp_path / "layer.tar")
    with tarfile.open(tmp_path / "layer.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:2] == ["safe", "safe/ok.txt"]
    rest = members[2:]
    if kind == "traversal":
        assert all(".." in m.name.split("/") for m in rest)
    elif kind == "absolute":
        assert all(m.name.startswith(ESCAPE_DIR) for m in rest)
    elif kind == "symlink-escape":
        links = [m for m in rest if m.issym()]
        assert len(links) == 3 and any(m.linkname == "/tmp" for m in links)
        assert all(
            f.name.split("/")[0] in {"link-rel", "link-abs", "safe"} for f in rest if f.isfile()
        )
    elif kind == "hardlink-escape":
        assert [m.islnk() for m in rest] == [True, True, False]
        assert rest[1].linkname == SENTINEL and rest[0].linkname.startswith("../")
    elif kind == "duplicate":
        assert names.count("dup.txt") == 2 and names.count("file-then-dir") == 2
    elif kind == "bare-whiteout":
        assert {".wh.", "safe/.wh.", "safe/.wh.."} <= set(names)
    elif kind == "device":
        assert sorted((m.ischr(), m.isblk(), m.devmajor) for m in rest if m.isdev()) == [
            (False, True, 8),
            (True, False, 1),
        ]
    assert not os.path.exists(ESCAPE_DIR)


def test_hostile_archives(tmp_path: Path) -> None:
    archive = images.hostile_docker_archive("traversal", tmp_path / "h.tar")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = tar.extractfile(manifest[0]["Layers"][0])
        assert layer is not None
        with tarfile.open(fileobj=layer) as inner:
            assert any(n.startswith("../") for n in inner.getnames())
    layout = images.hostile_oci_layout("device", tmp_path / "layout")
    assert layout.tag == "device" and len(layout.diff_ids) == 1
    bad = images.hostile_manifest_archive(tmp_path / "bad.tar")
    with tarfile.open(bad) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"../evil.json", "/abs.json"} <= set(names)
    assert manifest[0]["Config"].startswith("../") and manifest[0]["Layers"][1].startswith("/")


def test_big_layer_file_streams_incompressible_data(tmp_path: Path) -> None:
    size = 8 << 20
    big = images.big_layer_file(tmp_path / "big.tar", size, seed=7, files=3)
    data = big.path.read_bytes()
    assert big.tar_size == len(data) and len(data) % 10240 == 0
    assert big.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    with tarfile.open(big.path) as tar:
        assert sum(m.size for m in tar.getmembers()) == size
    assert len(gzip.compress(data, 1)) > 0.99 * size
    assert (
        images.big_layer_file(tmp_path / "again.tar", size, seed=7, files=3).diff_id == big.diff_id
    )
    assert (
        images.big_layer_file(tmp_path / "other.tar", size, seed=8, files=3).diff_id != big.diff_id
    )
    # Writing a 96 MiB layer must not hold it in memory.
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from lab.images import big_layer_file; big_layer_file({str(tmp_path / 'm.tar')!r}, 96 << 20)"
    assert measure([sys.executable, "-c", code]).peak_rss < 64 << 20


# --- helpers ----------------------------------------------------------------------------


def test_peak_rss_measures_the_command_not_pytest(peak_rss: Callable[..., int]) -> None:
    ballast = bytearray(64 << 20)  # make pytest itself big; it must not leak into the result
    assert peak_rss(["true"]) < 32 << 20
    grab = "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096])"
    assert peak_rss([sys.executable, "-c", grab]) > 200 << 20
    with pytest.raises(AssertionError, match="exit status 3"):
        peak_rss([sys.executable, "-c", "import sys; sys.exit(3)"])
    del ballast


def test_measure_times_the_command_without_the_wrappers_start_up() -> None:
    started = time.perf_counter()
    result = measure(["sleep", "0.3"])
    outside = time.perf_counter() - started
    assert result.returncode == 0 and 0.3 <= result.seconds < outside
    quick = measure(["true"])
    assert quick.seconds < 0.2 and quick.seconds < measure(["sleep", "0.05"]).seconds
    assert result.cpu < 0.2  # sleeping costs no CPU; spinning does
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    assert measure([sys.executable, "-c", spin]).cpu >= 0.3


def test_require_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require("no-such-tool-occystrap-lab")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require("no-such-tool-occystrap-lab")
    assert require("skopeo").endswith("/skopeo")


def test_run_reports_failures_clearly() -> None:
    with pytest.raises(
        AssertionError, match=r"(?s)exit status 2: sh -c echo oops >&2; exit 2\n.*oops"
    ):
        run(["sh", "-c", "echo oops >&2; exit 2"])
    assert run(["sh", "-c", "exit 4"], check=False).returncode == 4


def test_run_occystrap_runs_the_module(run_occystrap: OccystrapRunner) -> None:
    done = run_occystrap("--help", env={"LAB_PROBE": "1"})
    assert isinstance(done, subprocess.CompletedProcess) and isinstance(done.stderr, bytes)
    assert done.args[:3] == [sys.executable, "-m", "occystrap"]
