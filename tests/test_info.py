"""``occystrap info``: the JSON of every input validates against docs/info.schema.json, says
what the image's documents say, and never needs a layer's bytes.

Judges: the lab's own record of what it built (``LayoutInfo``), skopeo for the registry and
daemon inputs, and the draft-07 schema in docs/. Error exits are tested with ``check`` in
test_check.py (``test_one_line_errors`` runs both commands).
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from lab import images
from lab.daemon import Daemon
from lab.ocilayout import INDEX_TYPE, MANIFEST_TYPE, LayoutInfo, canonical_json
from lab.registry import Registry
from lab.tarspec import directory, file
from lab.tools import OccystrapRunner, skopeo
from occystrap.transports.daemon.client import DaemonClient

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "info.schema.json"


@functools.cache
def _validator() -> Any:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def info(
    run: OccystrapRunner, source: str, *global_opts: str, stdin: bytes | None = None
) -> dict[str, Any]:
    done = run(*global_opts, "info", "--json", source, input=stdin)
    assert done.returncode == 0, done.stderr.decode()
    described: dict[str, Any] = json.loads(done.stdout)
    errors = sorted(_validator().iter_errors(described), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    return described


def same_layers(described: dict[str, Any], layout: LayoutInfo) -> None:
    assert [layer["diff_id"] for layer in described["layers"]] == layout.diff_ids
    assert described["config_digest"] == layout.config_digest
    assert described["layer_count"] == len(layout.diff_ids)
    assert [layer["created_by"] for layer in described["layers"]] == [
        h["created_by"] for h in layout.config["history"] if not h.get("empty_layer")
    ]


# -- a rich image ----------------------------------------------------------------------------

OVERRIDES: dict[str, Any] = {
    "author": "lab author",
    "config": {
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo hello"],
        "Env": ["PATH=/bin", "A=1"],
        "User": "1000:1000",
        "WorkingDir": "/srv",
        "Labels": {"org.example.team": "lab", "version": "1"},
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}, "/cache": {}},
        "StopSignal": "SIGTERM",
    },
    "history": [
        {"created": "2024-01-01T00:00:00Z", "created_by": "ADD base", "comment": "first"},
        {"created": "2024-01-02T00:00:00Z", "created_by": "ENV A=1", "empty_layer": True},
        {"created": "2024-01-03T00:00:00Z", "created_by": "COPY app /srv"},
    ],
}


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> LayoutInfo:
    layers = [
        [directory("etc"), file("etc/os", "lab\n")],
        [directory("srv"), file("srv/app", "x" * 3000)],
    ]
    return images.build_oci_layout(
        tmp_path_factory.mktemp("rich") / "img", layers, OVERRIDES, compression="none",
        manifest_annotations={"org.opencontainers.image.title": "rich"},
    )  # fmt: skip


def test_rich_image_fields(run_occystrap: OccystrapRunner, rich: LayoutInfo) -> None:
    d = info(run_occystrap, f"ocidir://{rich.path}:latest")
    same_layers(d, rich)
    assert d["manifest_digest"] == rich.manifest_digest
    assert d["manifest_size"] == rich.manifest_size
    assert d["manifest_media_type"] == MANIFEST_TYPE
    assert d["config_media_type"] == "application/vnd.oci.image.config.v1+json"
    assert d["annotations"] == {"org.opencontainers.image.title": "rich"}
    assert (d["platform"], d["os"], d["architecture"], d["variant"]) == (
        "linux/amd64",
        "linux",
        "amd64",
        None,
    )
    assert d["tag"] == "latest" and d["platforms"] is None and d["index_digest"] is None
    assert d["entrypoint"] == ["/bin/sh", "-c"] and d["cmd"] == ["echo hello"]
    assert d["env"] == ["PATH=/bin", "A=1"]
    assert (d["user"], d["working_dir"], d["stop_signal"]) == ("1000:1000", "/srv", "SIGTERM")
    assert d["labels"] == {"org.example.team": "lab", "version": "1"}
    assert d["exposed_ports"] == ["53/udp", "8080/tcp"] and d["volumes"] == ["/cache", "/data"]
    assert d["author"] == "lab author" and d["created"] == "2024-01-01T00:00:00Z"
    assert (d["history_count"], d["empty_layer_count"]) == (3, 1)
    assert [h["empty_layer"] for h in d["history"]] == [False, True, False]
    assert [(x["created_by"], x["comment"]) for x in d["layers"]] == [
        ("ADD base", "first"),
        ("COPY app /srv", None),
    ]
    assert [x["digest"] for x in d["layers"]] == rich.layer_digests
    assert [x["size"] for x in d["layers"]] == rich.layer_sizes
    # uncompressed layers: the stored size is the uncompressed size
    assert [x["uncompressed_size"] for x in d["layers"]] == rich.layer_sizes
    assert d["total_size"] == d["total_uncompressed_size"] == sum(rich.layer_sizes)
    assert {x["compression"] for x in d["layers"]} == {"none"}


def test_text_output(run_occystrap: OccystrapRunner, rich: LayoutInfo) -> None:
    done = run_occystrap("info", f"ocidir://{rich.path}")
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    for expected in (
        f"Manifest:       {rich.manifest_digest} ({MANIFEST_TYPE})",
        "Platform:       linux/amd64",
        f"Config:         {rich.config_digest}",
        "Layers:         2,",
        "History:        3 entries (1 empty)",
        "Entrypoint:     /bin/sh -c",
        "Cmd:            'echo hello'",
        "User:           1000:1000",
        "WorkingDir:     /srv",
        "Ports:          53/udp, 8080/tcp",
        "Volumes:        /cache, /data",
        "Label:          version=1",
        "Env:            A=1",
        "COPY app /srv",
    ):
        assert expected in text, (expected, text)


def test_no_layer_is_read(
    run_occystrap: OccystrapRunner, edge_layout: LayoutInfo, tmp_path: Path
) -> None:
    """The layer blobs can be gone: info needs only the manifest and the config."""
    import shutil

    copy = tmp_path / "layout"
    shutil.copytree(edge_layout.path, copy)
    for digest in edge_layout.layer_digests:
        (copy / "blobs" / "sha256" / digest[7:]).unlink()
    d = info(run_occystrap, f"ocidir://{copy}")
    same_layers(d, edge_layout)
    assert d["total_size"] == sum(edge_layout.layer_sizes)
    assert d["total_uncompressed_size"] is None  # gzip layers: not known without reading


# -- every input ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archives(
    tmp_path_factory: pytest.TempPathFactory, edge_layout: LayoutInfo, busybox_layout: LayoutInfo
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("info-archives")
    legacy = images.docker_save_legacy(edge_layout, root / "legacy.tar", gzip_layers=True)
    return {
        "legacy-gzip": legacy,
        "docker25": images.docker_save_oci(edge_layout, root / "oci.tar"),
        "containerd": images.docker_save_containerd(edge_layout, root / "ctr.tar"),
        "podman": images.docker_save_podman(edge_layout, root / "podman.tar"),
        "gzip-wrapped": images.gzip_archive(legacy, root / "legacy.tar.gz"),
        "multi": images.docker_save_multi(
            [(busybox_layout, ["lab/bb:1"]), (edge_layout, ["lab/edge:1"])], root / "multi.tar"
        ),
    }


@pytest.mark.parametrize(
    "flavour", ["legacy-gzip", "docker25", "containerd", "podman", "gzip-wrapped"]
)
def test_docker_archives(
    run_occystrap: OccystrapRunner, archives: dict[str, Path], edge_layout: LayoutInfo, flavour: str
) -> None:
    d = info(run_occystrap, f"tar://{archives[flavour]}")
    same_layers(d, edge_layout)
    assert (d["name"], d["tag"]) == ("lab/image", "latest")
    if flavour in ("docker25", "containerd"):  # the OCI layout inside gives the manifest
        assert d["manifest_media_type"] == MANIFEST_TYPE
    if flavour == "containerd":
        assert d["manifest_digest"] == edge_layout.manifest_digest
        assert [x["digest"] for x in d["layers"]] == edge_layout.layer_digests
    if flavour in ("legacy-gzip", "podman"):
        assert d["manifest_digest"] is None and d["config_media_type"] is None


def test_multi_image_archive_and_stdin(
    run_occystrap: OccystrapRunner,
    archives: dict[str, Path],
    busybox_layout: LayoutInfo,
    edge_layout: LayoutInfo,
) -> None:
    same_layers(info(run_occystrap, f"tar://{archives['multi']}?image=lab/edge:1"), edge_layout)
    same_layers(info(run_occystrap, f"tar://{archives['multi']}?index=0"), busybox_layout)
    piped = info(run_occystrap, "tar://-", stdin=archives["podman"].read_bytes())
    same_layers(piped, edge_layout)


def test_skopeo_archive(
    run_occystrap: OccystrapRunner, busybox_archive: Path, busybox_layout: LayoutInfo
) -> None:
    d = info(run_occystrap, f"tar://{busybox_archive}")
    same_layers(d, busybox_layout)
    # skopeo records the full name in RepoTags
    assert (d["name"], d["tag"]) == ("docker.io/lab/busybox", "latest")
    assert d["reference"] == "docker.io/lab/busybox:latest"


def _multi_platform(root: Path) -> tuple[Path, LayoutInfo, LayoutInfo, str]:
    amd = images.build_oci_layout(root, [[file("amd", "1")]], tag="amd")
    arm = images.build_oci_layout(
        root, [[file("arm", "2")]], {"architecture": "arm64", "variant": "v8"}, tag="arm"
    )
    entries = [
        {"mediaType": MANIFEST_TYPE, "digest": amd.manifest_digest, "size": amd.manifest_size,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": MANIFEST_TYPE, "digest": arm.manifest_digest, "size": arm.manifest_size,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": MANIFEST_TYPE, "digest": arm.manifest_digest, "size": arm.manifest_size,
         "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
    ]  # fmt: skip
    nested = canonical_json({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries})
    digest = "sha256:" + hashlib.sha256(nested).hexdigest()
    (root / "blobs" / "sha256" / digest[7:]).write_bytes(nested)
    top = {"mediaType": INDEX_TYPE, "digest": digest, "size": len(nested),
           "annotations": {"org.opencontainers.image.ref.name": "multi"}}  # fmt: skip
    index = json.loads((root / "index.json").read_bytes())
    index["manifests"].append(top)
    (root / "index.json").write_bytes(canonical_json(index))
    return root, amd, arm, digest


def test_multi_platform_index(run_occystrap: OccystrapRunner, tmp_path: Path) -> None:
    root, amd, arm, index_digest = _multi_platform(tmp_path / "multi")
    skopeo("inspect", f"oci:{root}:multi")
    d = info(run_occystrap, f"ocidir://{root}:multi")
    same_layers(d, amd)
    assert d["index_digest"] == index_digest and d["index_media_type"] == INDEX_TYPE
    platforms = d["platforms"]
    assert [p["platform"] for p in platforms] == [
        "linux/amd64",
        "linux/arm64/v8",
        "unknown/unknown",
    ]
    assert [p["selected"] for p in platforms] == [True, False, False]
    assert [p["attestation"] for p in platforms] == [False, False, True]
    assert platforms[1]["digest"] == arm.manifest_digest
    for chosen in (
        info(run_occystrap, f"ocidir://{root}:multi", "--platform", "linux/arm64"),
        info(run_occystrap, f"ocidir://{root}:multi?platform=linux/arm64/v8"),
    ):
        same_layers(chosen, arm)
        assert chosen["platform"] == "linux/arm64/v8" and chosen["variant"] == "v8"
        assert [p["selected"] for p in chosen["platforms"]] == [False, True, True]
    text = run_occystrap("info", f"ocidir://{root}:multi").stdout.decode()
    assert "linux/arm64/v8" in text and "(selected)" in text and "(attestation)" in text


# -- daemons and registries ----------------------------------------------------------------


def test_docker_daemon(
    run_occystrap: OccystrapRunner, podman: Daemon, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    tag = f"occy-info-{uuid.uuid4().hex[:8]}/busybox:v1"
    archive = images.to_docker_archive(busybox_layout, "latest", tmp_path / "bb.tar", tag)
    with DaemonClient(str(podman.socket)) as client, open(archive, "rb") as f:
        client.load_image(f)
    try:
        source = f"docker://{tag}?socket={podman.socket}"
        d = info(run_occystrap, source)
        same_layers(d, busybox_layout)
        assert d["tag"] == "v1"
        done = run_occystrap("check", "--full", source)
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    finally:
        with DaemonClient(str(podman.socket)) as client:
            client.remove_image(tag, force=True)


def test_registry(
    run_occystrap: OccystrapRunner, registry_plain: Registry, edge_layout: LayoutInfo
) -> None:
    skopeo(
        "copy",
        *registry_plain.skopeo_args("dest"),
        edge_layout.ref,
        registry_plain.ref("lab/info", "v1"),
    )
    source = f"registry://{registry_plain.host}/lab/info:v1?insecure=true"
    d = info(run_occystrap, source)
    same_layers(d, edge_layout)
    assert d["manifest_digest"] == edge_layout.manifest_digest
    assert [x["digest"] for x in d["layers"]] == edge_layout.layer_digests
    done = run_occystrap("check", "--full", source)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
