"""registry:// source and sink against the real docker-registry (distribution 2.8), judged by skopeo.

Everything runs through the CLI (``python -m occystrap``). Every run gets an isolated HOME,
DOCKER_CONFIG, XDG dirs and REGISTRY_AUTH_FILE, so credentials and caches of the machine
never leak in. skopeo is the judge: ``skopeo copy docker://… oci:DIR`` verifies every digest
it pulls, and ``skopeo inspect --raw`` gives the manifest bytes whose sha256 we compare.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import json
import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab import images
from lab.ocilayout import LayoutInfo, canonical_json
from lab.registry import Registry
from lab.tarspec import directory, file, tar_bytes
from lab.tools import OccystrapRunner, require, run, skopeo

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"


# -- helpers ------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment with no credentials, certificates or caches of this machine."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "HOME": str(home),
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "REGISTRY_AUTH_FILE": str(tmp_path / "no-auth.json"),
    }


@pytest.fixture
def occ(run_occystrap: OccystrapRunner, env: dict[str, str]) -> Runner:
    return Runner(run_occystrap, env)


@dataclass
class Runner:
    runner: OccystrapRunner
    env: dict[str, str]

    def __call__(
        self, *args: str | Path, ok: bool = True, extra_env: Mapping[str, str] | None = None
    ) -> Any:
        done = self.runner(*args, env={**self.env, **(extra_env or {})})
        if ok and done.returncode != 0:
            raise AssertionError(
                f"occystrap {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr.decode()}"
            )
        return done


def raw_manifest(reg: Registry, repo: str, ref: str = "latest") -> bytes:
    """The manifest bytes as skopeo fetches them (``ref`` a tag or ``@sha256:…``)."""
    cmd = [require("skopeo"), "--insecure-policy", "inspect", "--raw", *reg.skopeo_args("plain")]
    done = run([*cmd, reg.ref(repo, ref)], text=False)
    out: bytes = done.stdout
    return out


def skopeo_pull(reg: Registry, repo: str, ref: str, dest: Path) -> None:
    """skopeo copies (and so verifies every blob digest of) the image into an OCI layout."""
    skopeo("copy", *reg.skopeo_args("src"), reg.ref(repo, ref), f"oci:{dest}:x")


def skopeo_push(layout: LayoutInfo, reg: Registry, repo: str, tag: str) -> None:
    skopeo("copy", *reg.skopeo_args("dest"), layout.ref, reg.ref(repo, tag))


def one_line_error(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("occystrap: error: "), lines
    return lines[0]


def requests_in_log(reg: Registry, since: int) -> list[tuple[str, str, int]]:
    """(method, uri, status) of the registry's access-log lines written after byte ``since``."""
    with open(reg.log_file, "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    found = re.findall(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) ', text)
    return [(m, u, int(s)) for m, u, s in found]


def put_blob(reg: Registry, repo: str, data: bytes) -> dict[str, Any]:
    """Monolithic upload with plain httpx (anonymous registries only)."""
    with httpx.Client(base_url=reg.url, verify=False) as http:
        post = http.post(f"/v2/{repo}/blobs/uploads/")
        assert post.status_code == 202, post.text
        location = httpx.URL(post.headers["location"]).copy_merge_params({"digest": sha256(data)})
        put = http.put(location, content=data)
        assert put.status_code == 201, put.text
    return {"digest": sha256(data), "size": len(data)}


def put_manifest(reg: Registry, repo: str, ref: str, raw: bytes, media_type: str) -> str:
    with httpx.Client(base_url=reg.url, verify=False) as http:
        put = http.put(
            f"/v2/{repo}/manifests/{ref}", content=raw, headers={"Content-Type": media_type}
        )
        assert put.status_code == 201, put.text
    return sha256(raw)


# -- fixture images -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def seeded(registry_plain: Registry, edge_layout: LayoutInfo) -> str:
    """The 3-layer edge-case image pushed by skopeo to ``lab/edge:v1``; returns its repo."""
    skopeo_push(edge_layout, registry_plain, "lab/edge", "v1")
    assert sha256(raw_manifest(registry_plain, "lab/edge", "v1")) == edge_layout.manifest_digest
    return "lab/edge"


@dataclass(frozen=True)
class MultiArch:
    repo: str
    index_digest: str
    list_digest: str  # the same images as a Docker manifest list (tag "list")
    children: dict[str, str]  # platform -> manifest digest
    attestation: str


PLATFORMS = {
    "linux/amd64": {"architecture": "amd64", "os": "linux"},
    "linux/arm64": {"architecture": "arm64", "os": "linux"},  # no variant: means v8
    "linux/arm/v7": {"architecture": "arm", "os": "linux", "variant": "v7"},
}


@pytest.fixture(scope="session")
def multiarch(registry_plain: Registry, lab_dir: Path) -> MultiArch:
    """``lab/multi:oci`` (OCI index) and ``lab/multi:list`` (Docker list) of three images plus
    a BuildKit-style attestation manifest (platform unknown/unknown)."""
    reg, repo = registry_plain, "lab/multi"
    entries, children = [], {}
    for i, (name, platform) in enumerate(PLATFORMS.items()):
        layers = [
            [file("etc/arch", f"{name}\n"), directory("tmp")],
            [file(f"data/{i}.bin", "x" * (1000 + i))],
        ]
        layout = images.build_oci_layout(
            lab_dir / "multi" / str(i), layers, config_overrides=platform
        )
        skopeo_push(layout, reg, repo, f"part-{i}")
        children[name] = layout.manifest_digest
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": layout.manifest_digest,
                "size": layout.manifest_size,
                "platform": platform,
            }
        )
    config = put_blob(
        reg,
        repo,
        b'{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}',
    )
    statement = put_blob(reg, repo, b'{"_type":"https://in-toto.io/Statement/v0.1"}')
    attestation = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.in-toto+json", **statement}],
    })  # fmt: skip
    att_digest = put_manifest(reg, repo, sha256(attestation), attestation, OCI_MANIFEST)
    entries.append({
        "mediaType": OCI_MANIFEST, "digest": att_digest, "size": len(attestation),
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {"vnd.docker.reference.digest": children["linux/amd64"], "vnd.docker.reference.type": "attestation-manifest"},
    })  # fmt: skip
    # Pretty-printed on purpose: the copy must keep these exact bytes, not re-serialise them.
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, indent=3
    ).encode()
    listing = json.dumps(
        {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries[:3]}, indent=2
    ).encode()
    return MultiArch(
        repo,
        put_manifest(reg, repo, "oci", index, OCI_INDEX),
        put_manifest(reg, repo, "list", listing, DOCKER_LIST),
        children,
        att_digest,
    )


# -- round trips ------------------------------------------------------------------------------


def test_push_from_ocidir_keeps_the_manifest_and_skopeo_verifies(
    occ: Runner, registry_plain: Registry, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    reg = registry_plain
    done = occ(
        "--insecure",
        "process",
        f"ocidir://{busybox_layout.path}:latest",
        f"registry://{reg.host}/rt/busybox:v1",
    )
    pushed = sha256(raw_manifest(reg, "rt/busybox", "v1"))
    assert pushed == busybox_layout.manifest_digest  # byte-identical, nothing recompressed
    assert f"pushed {reg.host}/rt/busybox:v1@{pushed}" in done.stderr.decode()
    skopeo_pull(reg, "rt/busybox", "v1", tmp_path / "judge")
    # and back: registry -> ocidir keeps the digest too
    occ(
        "--insecure",
        "process",
        f"registry://{reg.host}/rt/busybox:v1",
        f"ocidir://{tmp_path / 'back'}:v1",
    )
    index = json.loads((tmp_path / "back" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [busybox_layout.manifest_digest]
    skopeo("copy", f"oci:{tmp_path / 'back'}:v1", f"oci:{tmp_path / 'judge2'}:x")


def test_registry_to_registry_is_byte_identical(
    occ: Runner,
    registry_plain: Registry,
    make_registry: Any,
    seeded: str,
    edge_layout: LayoutInfo,
    tmp_path: Path,
) -> None:
    other: Registry = make_registry("plain")
    src = f"registry://{registry_plain.host}/{seeded}:v1"
    occ("--insecure", "process", src, f"registry://{other.host}/mirror/edge:v1")
    raw = raw_manifest(other, "mirror/edge", "v1")
    assert raw == raw_manifest(registry_plain, seeded, "v1")
    assert sha256(raw) == edge_layout.manifest_digest
    manifest = json.loads(raw)
    assert [layer["digest"] for layer in manifest["layers"]] == edge_layout.layer_digests
    skopeo_pull(other, "mirror/edge", "v1", tmp_path / "judge")
    # a second run finds every blob present and uploads nothing
    since = other.log_file.stat().st_size
    occ("--insecure", "process", src, f"registry://{other.host}/mirror/edge:v2")
    methods = [(m, u) for m, u, _ in requests_in_log(other, since)]
    assert not [
        u for m, u in methods if m in ("PATCH", "POST") or (m == "PUT" and "/blobs/" in u)
    ], methods
    assert sha256(raw_manifest(other, "mirror/edge", "v2")) == edge_layout.manifest_digest


def test_copy_within_a_registry_mounts_every_blob(
    occ: Runner, registry_plain: Registry, seeded: str, edge_layout: LayoutInfo
) -> None:
    reg = registry_plain
    since = reg.log_file.stat().st_size
    done = occ(
        "--insecure",
        "process",
        f"registry://{reg.host}/{seeded}:v1",
        f"registry://{reg.host}/mounted/edge:v1",
    )
    requests = requests_in_log(reg, since)
    to_dest = [(m, u, s) for m, u, s in requests if u.startswith("/v2/mounted/edge/blobs/")]
    mounts = [u for m, u, s in to_dest if m == "POST" and "mount=" in u and s == 201]
    assert len(mounts) == len(edge_layout.layer_digests) + 1, to_dest  # layers + config
    assert all("from=lab%2Fedge" in u for u in mounts)
    # one request per blob: the mount is asked first, with no HEAD before it
    assert len(to_dest) == len(mounts), to_dest  # no HEAD, PATCH or PUT of a blob
    n = len(edge_layout.layer_digests)
    layers = f"{n} layer" + ("" if n == 1 else "s")
    assert f"{layers} (0 already present, {n} mounted)" in done.stderr.decode()
    assert not [
        r
        for r in requests
        if r[0] == "GET"
        and "/blobs/sha256:" in r[1]
        and "/lab/edge/" in r[1]
        and r[1].rsplit("/", 1)[1] in edge_layout.layer_digests
    ]  # layers never downloaded
    assert sha256(raw_manifest(reg, "mounted/edge", "v1")) == edge_layout.manifest_digest


def test_tarball_to_registry_compresses_deterministically(
    occ: Runner, registry_plain: Registry, edge_archive: Path, tmp_path: Path
) -> None:
    reg = registry_plain
    occ("--insecure", "process", f"tar://{edge_archive}", f"registry://{reg.host}/fromtar/edge:a")
    occ("--insecure", "process", f"tar://{edge_archive}", f"registry://{reg.host}/fromtar/edge2:b")
    first, second = raw_manifest(reg, "fromtar/edge", "a"), raw_manifest(reg, "fromtar/edge2", "b")
    assert first == second  # same layer, same compressed bytes, same digest
    manifest = json.loads(first)
    assert (
        manifest["mediaType"] == DOCKER_MANIFEST
    )  # docker-save source: pushed as docker push would
    assert {layer["mediaType"] for layer in manifest["layers"]} == {DOCKER_GZIP}
    skopeo_pull(reg, "fromtar/edge", "a", tmp_path / "judge")
    config = json.loads(
        run(
            [
                require("skopeo"),
                "inspect",
                "--config",
                *reg.skopeo_args("plain"),
                reg.ref("fromtar/edge", "a"),
            ]
        ).stdout
    )
    judged = tmp_path / "judge"
    # the config's diff_ids are the sha256 of the decompressed layers skopeo fetched
    for desc, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        blob = (judged / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_bytes()
        assert sha256(gzip.decompress(blob)) == diff_id


def test_zstd_via_uri_option_uses_oci_media_types(
    occ: Runner, registry_plain: Registry, busybox_archive: Path, tmp_path: Path
) -> None:
    reg = registry_plain
    occ(
        "--insecure",
        "process",
        f"tar://{busybox_archive}",
        f"registry://{reg.host}/zstd/busybox:v1?compression=zstd&level=5",
    )
    manifest = json.loads(raw_manifest(reg, "zstd/busybox", "v1"))
    assert manifest["mediaType"] == OCI_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_ZSTD]
    skopeo_pull(reg, "zstd/busybox", "v1", tmp_path / "judge")
    blob = tmp_path / "judge" / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]
    assert blob.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    bad = occ(
        "--insecure",
        "process",
        f"tar://{busybox_archive}",
        f"registry://{reg.host}/zstd/x:v1?level=99",
        ok=False,
    )
    assert bad.returncode == 2, bad.stderr


# -- platforms and indexes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "query", "expected"),
    [
        ((), "", "linux/amd64"),
        (("--platform", "linux/arm64"), "", "linux/arm64"),
        (("--platform", "linux/arm64/v8"), "", "linux/arm64"),  # the entry has no variant: v8
        (("--architecture", "aarch64"), "", "linux/arm64"),  # the reference tool's flags
        (("--arch", "arm", "--variant", "v7"), "", "linux/arm/v7"),
        (("--platform", "linux/amd64"), "?platform=linux/arm/v7", "linux/arm/v7"),
    ],
)
def test_platform_selection(
    occ: Runner,
    registry_plain: Registry,
    multiarch: MultiArch,
    flags: tuple[str, ...],
    query: str,
    expected: str,
) -> None:
    reg = registry_plain
    dest = f"pick/{expected.replace('/', '-')}"
    occ(
        "--insecure",
        *flags,
        "process",
        f"registry://{reg.host}/{multiarch.repo}:oci{query}",
        f"registry://{reg.host}/{dest}:v1",
    )
    assert sha256(raw_manifest(reg, dest, "v1")) == multiarch.children[expected]


@pytest.mark.parametrize("tag", ["oci", "list"])
def test_no_matching_platform_lists_what_the_index_offers(
    occ: Runner, registry_plain: Registry, multiarch: MultiArch, tmp_path: Path, tag: str
) -> None:
    done = occ("--insecure", "--platform", "linux/s390x", "process",
               f"registry://{registry_plain.host}/{multiarch.repo}:{tag}", f"ocidir://{tmp_path / 'out'}", ok=False)  # fmt: skip
    assert done.returncode == 1
    line = one_line_error(done.stderr)
    assert "linux/s390x" in line and "linux/amd64, linux/arm64, linux/arm/v7" in line, line
    assert "unknown" not in line  # attestations are not platforms
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("tag", "digest_attr"), [("oci", "index_digest"), ("list", "list_digest")])
def test_all_platforms_keeps_the_index_digest(
    occ: Runner,
    registry_plain: Registry,
    make_registry: Any,
    multiarch: MultiArch,
    tmp_path: Path,
    tag: str,
    digest_attr: str,
) -> None:
    other: Registry = make_registry("plain")
    src = f"registry://{registry_plain.host}/{multiarch.repo}:{tag}"
    done = occ(
        "--insecure", "--all-platforms", "process", src, f"registry://{other.host}/all/multi:{tag}"
    )
    expected = getattr(multiarch, digest_attr)
    assert sha256(raw_manifest(other, "all/multi", tag)) == expected
    assert f"@{expected} (index of" in done.stderr.decode()
    children = list(multiarch.children.values()) + ([multiarch.attestation] if tag == "oci" else [])
    for digest in children:
        assert sha256(raw_manifest(other, "all/multi", f"@{digest}")) == digest
    # skopeo verifies every image of the copied index
    skopeo(
        "copy",
        "--all",
        *other.skopeo_args("src"),
        other.ref("all/multi", tag),
        f"oci:{tmp_path / 'judge'}:x",
    )


def test_all_platforms_needs_a_destination_that_holds_an_index(
    occ: Runner, registry_plain: Registry, multiarch: MultiArch, tmp_path: Path
) -> None:
    done = occ("--insecure", "--all-platforms", "process",
               f"registry://{registry_plain.host}/{multiarch.repo}:oci", f"tar://{tmp_path / 'x.tar'}", ok=False)  # fmt: skip
    assert done.returncode == 2
    assert "--all-platforms" in one_line_error(done.stderr)
    assert not (tmp_path / "x.tar").exists()


def test_all_platforms_of_a_plain_manifest_copies_it(
    occ: Runner, registry_plain: Registry, seeded: str, edge_layout: LayoutInfo
) -> None:
    reg = registry_plain
    occ(
        "--insecure",
        "--all-platforms",
        "process",
        f"registry://{reg.host}/{seeded}:v1",
        f"registry://{reg.host}/allplain/edge:v1",
    )
    assert sha256(raw_manifest(reg, "allplain/edge", "v1")) == edge_layout.manifest_digest


def test_pull_by_digest_and_push_by_digest(
    occ: Runner, registry_plain: Registry, seeded: str, edge_layout: LayoutInfo
) -> None:
    reg, digest = registry_plain, edge_layout.manifest_digest
    done = occ(
        "--insecure",
        "process",
        f"registry://{reg.host}/{seeded}@{digest}",
        f"registry://{reg.host}/bydigest/edge@{digest}",
    )
    assert f"pushed {reg.host}/bydigest/edge@{digest}" in done.stderr.decode()
    assert sha256(raw_manifest(reg, "bydigest/edge", f"@{digest}")) == digest


def test_missing_image_is_a_clear_error(
    occ: Runner, registry_plain: Registry, tmp_path: Path
) -> None:
    done = occ(
        "--insecure",
        "process",
        f"registry://{registry_plain.host}/no/such:tag",
        f"ocidir://{tmp_path / 'o'}",
        ok=False,
    )
    assert done.returncode == 1
    assert "not found" in one_line_error(done.stderr)


# -- schema 1 -------------------------------------------------------------------------------------


class Schema1Registry:
    """A loopback fake registry serving one schema 1 manifest (distribution 2.8 refuses to
    store them) and its layer blobs; it records the paths asked for."""

    def __init__(
        self, manifest: bytes, media_type: str, digest: str, blobs: dict[str, bytes]
    ) -> None:
        self.asked: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.asked.append(self.path)
                if self.path == "/v2/":
                    self._send(200, b"{}", "application/json")
                elif self.path in ("/v2/old/app/manifests/v1", f"/v2/old/app/manifests/{digest}"):
                    self._send(200, manifest, media_type, {"Docker-Content-Digest": digest})
                elif (
                    self.path.startswith("/v2/old/app/blobs/")
                    and self.path.rsplit("/", 1)[1] in blobs
                ):
                    self._send(200, blobs[self.path.rsplit("/", 1)[1]], "application/octet-stream")
                else:
                    self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', "application/json")

            def _send(
                self, status: int, body: bytes, ctype: str, extra: Mapping[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Schema1Image:
    manifest: bytes
    digest: str
    tars: list[bytes]  # bottom first
    blobs: dict[str, bytes]


def make_schema1(signed: bool) -> Schema1Image:
    tars = [
        tar_bytes([directory("etc"), file("etc/hostname", "old\n")]),
        tar_bytes([file("app/run.sh", "#!/bin/sh\necho hi\n", mode=0o755)]),
    ]
    gz = [gzip.compress(t, mtime=0) for t in tars]
    blobs = {sha256(g): g for g in gz}
    v1 = [  # newest first, as schema 1 lists them
        {"id": "c3", "parent": "b2", "created": "2016-01-03T00:00:00Z", "architecture": "amd64", "os": "linux",
         "config": {"Cmd": ["/app/run.sh"], "Env": ["PATH=/bin"]}, "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"/app/run.sh\"]"]}, "throwaway": True},
        {"id": "b2", "parent": "a1", "created": "2016-01-02T00:00:00Z", "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD run.sh /app/"]}},
        {"id": "a1", "created": "2016-01-01T00:00:00Z", "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD etc /etc"]}},
    ]  # fmt: skip
    fs_layers = [
        {"blobSum": "sha256:" + "a" * 64},
        {"blobSum": sha256(gz[1])},
        {"blobSum": sha256(gz[0])},
    ]
    doc = {"schemaVersion": 1, "name": "old/app", "tag": "v1", "architecture": "amd64", "fsLayers": fs_layers,
           "history": [{"v1Compatibility": json.dumps(h)} for h in v1]}  # fmt: skip
    payload = json.dumps(doc, indent=3).encode()
    if not signed:
        return Schema1Image(payload, sha256(payload), tars, blobs)
    # libtrust's pretty JWS: signatures spliced in before the closing brace
    length, tail = len(payload) - 2, payload[-2:]
    protected = (
        base64.urlsafe_b64encode(
            json.dumps(
                {
                    "formatLength": length,
                    "formatTail": base64.urlsafe_b64encode(tail).decode().rstrip("="),
                    "time": "2016-01-04T00:00:00Z",
                }
            ).encode()
        )
        .decode()
        .rstrip("=")
    )
    signature = {
        "header": {"jwk": {"crv": "P-256", "kty": "EC", "x": "AA", "y": "AA"}, "alg": "ES256"},
        "signature": "AAAA",
        "protected": protected,
    }
    signed_raw = (
        payload[:length] + b',\n   "signatures": [' + json.dumps(signature).encode() + b"]" + tail
    )
    return Schema1Image(signed_raw, sha256(payload), tars, blobs)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_schema1_is_read_and_converted(
    occ: Runner, registry_plain: Registry, tmp_path: Path, signed: bool
) -> None:
    image = make_schema1(signed)
    assert (sha256(image.manifest) == image.digest) is not signed
    fake = Schema1Registry(
        image.manifest, SCHEMA1_SIGNED if signed else SCHEMA1, image.digest, image.blobs
    )
    try:
        out = tmp_path / "out"
        occ("--insecure", "process", f"registry://{fake.host}/old/app:v1", f"ocidir://{out}:v1")
        occ(
            "--insecure",
            "process",
            f"registry://{fake.host}/old/app@{image.digest}",
            f"registry://{registry_plain.host}/converted/app:v1",
        )
    finally:
        fake.close()
    assert not [
        p for p in fake.asked if "a" * 64 in p
    ]  # the throwaway entry's blob is never fetched
    index = json.loads((out / "index.json").read_text())
    manifest = json.loads(
        (out / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).read_bytes()
    )
    config = json.loads(
        (out / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_bytes()
    )
    assert config["rootfs"]["diff_ids"] == [sha256(t) for t in image.tars]
    assert [layer["digest"] for layer in manifest["layers"]] == [
        sha256(gzip.compress(t, mtime=0)) for t in image.tars
    ]
    assert [h.get("empty_layer", False) for h in config["history"]] == [False, False, True]
    assert config["history"][1]["created_by"] == "/bin/sh -c #(nop) ADD run.sh /app/"
    assert (
        config["config"]["Cmd"] == ["/app/run.sh"] and "id" not in config and "parent" not in config
    )
    skopeo("copy", f"oci:{out}:v1", f"oci:{tmp_path / 'judge'}:x")
    pushed = json.loads(raw_manifest(registry_plain, "converted/app", "v1"))
    assert pushed["mediaType"] == DOCKER_MANIFEST
    skopeo_pull(registry_plain, "converted/app", "v1", tmp_path / "judge2")


# -- credentials ------------------------------------------------------------------------------


def test_basic_auth_with_username_and_password(
    occ: Runner, registry_auth: Registry, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    reg = registry_auth
    dest = f"registry://{reg.host}/auth/busybox:v1"
    denied = occ("--insecure", "process", f"ocidir://{busybox_layout.path}", dest, ok=False)
    assert denied.returncode == 1
    assert "authentication required" in one_line_error(denied.stderr)
    done = occ("--insecure", "--debug", "--username", reg.username or "", "--password", reg.password or "",
               "process", f"ocidir://{busybox_layout.path}", dest)  # fmt: skip
    assert (reg.password or "?").encode() not in done.stderr  # no secret in any log line
    assert base64.b64encode(f"{reg.username}:{reg.password}".encode()) not in done.stderr
    assert sha256(raw_manifest(reg, "auth/busybox", "v1")) == busybox_layout.manifest_digest
    wrong = occ(
        "--insecure",
        "--username",
        "testuser",
        "--password",
        "nope",
        "process",
        dest,
        f"ocidir://{tmp_path / 'o'}",
        ok=False,
    )
    assert wrong.returncode == 1 and "credentials refused" in one_line_error(wrong.stderr)


def test_credentials_from_docker_config(
    occ: Runner, registry_auth: Registry, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    reg = registry_auth
    config_dir = Path(occ.env["DOCKER_CONFIG"])
    config_dir.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
    occ(
        "--insecure",
        "process",
        f"ocidir://{busybox_layout.path}",
        f"registry://{reg.host}/cfg/busybox:v1",
    )
    occ(
        "--insecure",
        "process",
        f"registry://{reg.host}/cfg/busybox:v1",
        f"ocidir://{tmp_path / 'back'}:v1",
    )
    index = json.loads((tmp_path / "back" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == busybox_layout.manifest_digest


def test_bearer_tokens(
    occ: Runner, registry_token: Registry, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    reg = registry_token
    dest = f"registry://{reg.host}/tok/busybox:v1"
    anonymous = occ("--insecure", "process", f"ocidir://{busybox_layout.path}", dest, ok=False)
    assert anonymous.returncode == 1, anonymous.stderr  # anonymous tokens only allow pull
    one_line_error(anonymous.stderr)
    occ("--insecure", "--username", reg.username or "", "--password", reg.password or "",
        "process", f"ocidir://{busybox_layout.path}", dest)  # fmt: skip
    occ("--insecure", "process", dest, f"ocidir://{tmp_path / 'anon'}:v1")  # anonymous pull
    index = json.loads((tmp_path / "anon" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == busybox_layout.manifest_digest
    # a mount between two repositories needs a token with both scopes
    occ("--insecure", "--username", reg.username or "", "--password", reg.password or "",
        "process", dest, f"registry://{reg.host}/tok/other:v1")  # fmt: skip
    assert sha256(raw_manifest(reg, "tok/other", "v1")) == busybox_layout.manifest_digest


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_needs_the_ca(
    occ: Runner, registry_tls: Registry, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    reg = registry_tls
    dest = f"registry://{reg.host}/tls/busybox:v1"
    refused = occ("process", f"ocidir://{busybox_layout.path}", dest, ok=False)
    assert refused.returncode == 1
    assert "TLS certificate verification failed" in one_line_error(refused.stderr)
    occ("--ca-file", str(reg.ca_file), "process", f"ocidir://{busybox_layout.path}", dest)
    assert sha256(raw_manifest(reg, "tls/busybox", "v1")) == busybox_layout.manifest_digest
    occ("--cert-dir", str(reg.certs_d), "process", dest, f"ocidir://{tmp_path / 'a'}:v1")
    occ("--tls-verify=false", "process", dest, f"ocidir://{tmp_path / 'b'}:v1")
    occ("process", f"{dest}?tls_verify=false", f"ocidir://{tmp_path / 'c'}:v1")
    for out in ("a", "b", "c"):
        index = json.loads((tmp_path / out / "index.json").read_text())
        assert index["manifests"][0]["digest"] == busybox_layout.manifest_digest


def test_plain_http_only_when_asked(occ: Runner, registry_plain: Registry, tmp_path: Path) -> None:
    done = occ(
        "process",
        f"registry://{registry_plain.host}/lab/edge:v1",
        f"ocidir://{tmp_path / 'o'}",
        ok=False,
    )
    assert done.returncode == 1
    one_line_error(done.stderr)  # HTTPS to a plain-HTTP registry fails; it never falls back


def test_all_platforms_from_an_oci_layout_keeps_the_index_digest(
    occ: Runner, registry_plain: Registry, multiarch: MultiArch, tmp_path: Path
) -> None:
    """Every entry of the layout's index is opened through ``Image.open_manifest``."""
    reg, layout = registry_plain, tmp_path / "layout"
    skopeo(
        "copy",
        "--all",
        *reg.skopeo_args("src"),
        reg.ref(multiarch.repo, "list"),
        f"oci:{layout}:multi",
    )
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    assert top["mediaType"] in (OCI_INDEX, DOCKER_LIST)
    occ(
        "--insecure",
        "--all-platforms",
        "process",
        f"ocidir://{layout}:multi",
        f"registry://{reg.host}/fromlayout/multi:v1",
    )
    assert sha256(raw_manifest(reg, "fromlayout/multi", "v1")) == top["digest"]
    skopeo(
        "copy",
        "--all",
        *reg.skopeo_args("src"),
        reg.ref("fromlayout/multi", "v1"),
        f"oci:{tmp_path / 'judge'}:x",
    )


def test_all_platforms_into_an_oci_layout_keeps_the_index_digest(
    occ: Runner, registry_plain: Registry, multiarch: MultiArch, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    occ(
        "--insecure",
        "--all-platforms",
        "process",
        f"registry://{registry_plain.host}/{multiarch.repo}:oci",
        f"ocidir://{out}:multi",
    )
    index = json.loads((out / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [multiarch.index_digest]
    skopeo("copy", "--all", f"oci:{out}:multi", f"oci:{tmp_path / 'judge'}:x")


# -- memory -------------------------------------------------------------------------------------


def test_registry_to_registry_big_layer_keeps_memory_flat(
    env: dict[str, str],
    registry_plain: Registry,
    make_registry: Any,
    peak_rss: Any,
    tmp_path: Path,
) -> None:
    """A 300 MB layer copied to another registry is streamed from the download into the
    upload: the peak RSS stays far below the layer size."""
    big = images.big_layer_file(tmp_path / "big.tar", 300 << 20, seed=300)
    layout = images.build_oci_layout(tmp_path / "layout", [big.path], compression="zstd")
    big.path.unlink()
    skopeo_push(layout, registry_plain, "mem/big", "v1")
    assert sha256(raw_manifest(registry_plain, "mem/big", "v1")) == layout.manifest_digest
    other: Registry = make_registry("plain")
    since = other.log_file.stat().st_size
    cli = [sys.executable, "-m", "occystrap", "--quiet", "--insecure", "process"]
    rss = peak_rss(
        [
            *cli,
            f"registry://{registry_plain.host}/mem/big:v1",
            f"registry://{other.host}/mem/big:v1",
        ],
        env={**os.environ, **env},
    )
    assert rss < 150 << 20, (
        f"peak RSS {rss / 2**20:.0f} MiB for a {layout.layer_sizes[0] >> 20} MiB layer"
    )
    assert sha256(raw_manifest(other, "mem/big", "v1")) == layout.manifest_digest
    uploads = [(m, s) for m, u, s in requests_in_log(other, since) if "/blobs/uploads/" in u]
    assert [m for m, _ in uploads].count("POST") == 2, uploads  # the layer and the config
    assert not [m for m, s in uploads if m == "GET" or s >= 400], uploads  # nothing re-sent
