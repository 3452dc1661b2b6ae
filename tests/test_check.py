"""``occystrap check``: passes every image of the lab corpus and every output of ours, and
catches each class of defect on purpose-built broken images.

Broken images are built with the lab helpers (``build_oci_layout`` with config overrides or
odd layer entries) or by editing a copy of a good layout here (``Layout``). The structural
document checks are cross-checked against the OCI JSON schemas vendored in tests/specs.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import shutil
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab import images, schemas
from lab.daemon import Daemon
from lab.ocilayout import CONFIG_TYPE, MANIFEST_TYPE, LayoutInfo, canonical_json
from lab.registry import Registry
from lab.tarspec import directory, file, tar_bytes
from lab.tools import OccystrapRunner, skopeo
from occystrap.check import CHECKS, Report, Severity, run_check, stores
from occystrap.check import layers as layer_checks
from occystrap.check.configdoc import check_config
from occystrap.check.documents import check_index, check_manifest
from occystrap.check.layers import LayerExpect, PathSet, check_layer
from occystrap.model.digest import Digest
from occystrap.transports.daemon.client import DaemonClient

DOCS = Path(__file__).resolve().parent.parent / "docs"
SUMMARY = re.compile(r"^Check complete \((full|metadata)\): (\d+) error\(s\), (\d+) warning\(s\)$")


# -- running check -------------------------------------------------------------------------


def check(run: OccystrapRunner, source: str | Path, *flags: str) -> tuple[int, dict[str, Any]]:
    """``check --json`` -> (exit status, parsed report), after checking the report's shape."""
    done = run("check", *flags, "--json", str(source))
    assert done.returncode in (0, 1) and done.stdout, done.stderr.decode()
    report = json.loads(done.stdout)
    assert set(report) == {"reference", "mode", "errors", "warnings", "infos", "results"}
    assert report["mode"] == ("full" if "--full" in flags else "metadata")
    for r in report["results"]:
        assert set(r) <= {"severity", "id", "message", "layer"}, r
        assert CHECKS[r["id"]][0] == r["severity"], r
        assert "\n" not in r["message"]
    for severity, key in (("error", "errors"), ("warning", "warnings"), ("info", "infos")):
        assert report[key] == sum(1 for r in report["results"] if r["severity"] == severity)
    assert done.returncode == (1 if report["errors"] else 0), report
    return done.returncode, report


def ids(report: dict[str, Any], severity: str | None = None) -> set[str]:
    return {r["id"] for r in report["results"] if severity is None or r["severity"] == severity}


def passes(run: OccystrapRunner, source: str | Path) -> dict[str, Any]:
    status, report = check(run, source, "--full")
    assert status == 0 and report["errors"] == 0, report
    return report


# -- editing a copy of a layout --------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_bytes())
    return doc


class Layout:
    """A copy of a one-image OCI layout whose documents tests may rewrite."""

    def __init__(self, info: LayoutInfo, dst: Path) -> None:
        shutil.copytree(info.path, dst)
        self.root = dst
        self.info = info

    @property
    def uri(self) -> str:
        return f"ocidir://{self.root}"

    def blob(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def put(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blob(digest).write_bytes(data)
        return digest, len(data)

    def index(self) -> dict[str, Any]:
        return _load(self.root / "index.json")

    def set_index(self, index: dict[str, Any]) -> None:
        (self.root / "index.json").write_bytes(canonical_json(index))

    def manifest(self) -> dict[str, Any]:
        return _load(self.blob(self.index()["manifests"][0]["digest"]))

    def set_manifest(self, manifest: dict[str, Any]) -> None:
        digest, size = self.put(canonical_json(manifest))
        index = self.index()
        index["manifests"][0].update(digest=digest, size=size)
        self.set_index(index)

    def config(self) -> dict[str, Any]:
        return _load(self.blob(self.manifest()["config"]["digest"]))

    def set_config(self, config: dict[str, Any]) -> None:
        digest, size = self.put(canonical_json(config))
        manifest = self.manifest()
        manifest["config"].update(digest=digest, size=size)
        self.set_manifest(manifest)


def _edit(fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        fn(doc)
        return doc

    return apply


def wrong_config_bytes(lay: Layout) -> None:
    path = lay.blob(lay.manifest()["config"]["digest"])
    path.write_bytes(path.read_bytes().replace(b'"amd64"', b'"arm64"'))  # same size


def config_size(lay: Layout) -> None:
    m = lay.manifest()
    m["config"]["size"] += 1
    lay.set_manifest(m)


def wrong_diff_id(lay: Layout) -> None:
    c = lay.config()
    c["rootfs"]["diff_ids"][0] = "sha256:" + hashlib.sha256(b"other").hexdigest()
    lay.set_config(c)


def layer_size(lay: Layout) -> None:
    m = lay.manifest()
    m["layers"][0]["size"] += 1
    lay.set_manifest(m)


def layer_bytes(lay: Layout) -> None:
    path = lay.blob(lay.manifest()["layers"][0]["digest"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))


def gzip_labelled_zstd(lay: Layout) -> None:
    m = lay.manifest()
    m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
    lay.set_manifest(m)


def history_count(lay: Layout) -> None:
    c = lay.config()
    c["history"] = c["history"] + [{"created_by": "phantom layer"}]
    lay.set_config(c)


def platform_without_os(lay: Layout) -> None:
    index = lay.index()
    index["manifests"][0]["platform"] = {"architecture": "amd64"}
    lay.set_index(index)


def rootfs_type(lay: Layout) -> None:
    c = lay.config()
    c["rootfs"]["type"] = "layer"
    lay.set_config(c)


def layer_count(lay: Layout) -> None:
    c = lay.config()
    c["rootfs"]["diff_ids"].append(c["rootfs"]["diff_ids"][0])
    c["history"].append({"created_by": "extra"})
    lay.set_config(c)


def schema_version(lay: Layout) -> None:
    m = lay.manifest()
    m["schemaVersion"] = 3
    lay.set_manifest(m)


def media_type_conflict(lay: Layout) -> None:
    index = lay.index()
    index["manifests"][0]["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    lay.set_index(index)


def missing_layer(lay: Layout) -> None:
    lay.blob(lay.manifest()["layers"][0]["digest"]).unlink()


def missing_media_type(lay: Layout) -> None:
    m = lay.manifest()
    del m["mediaType"]
    lay.set_manifest(m)


def empty_config_type(lay: Layout) -> None:
    m = lay.manifest()
    m["config"]["mediaType"] = "application/vnd.oci.empty.v1+json"
    lay.set_manifest(m)


def layout_version(lay: Layout) -> None:
    (lay.root / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')


def manifest_bytes(lay: Layout) -> None:
    path = lay.blob(lay.index()["manifests"][0]["digest"])
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":2 '))


def wrong_embedded_data(lay: Layout) -> None:
    m = lay.manifest()
    m["config"]["data"] = "e30="  # "{}": not the config's bytes
    lay.set_manifest(m)


# (edit, id, metadata mode finds it too)
BROKEN = [
    (wrong_config_bytes, "config-digest", True),
    (config_size, "config-size", True),
    (wrong_diff_id, "diff-id", False),
    (layer_size, "layer-size", True),
    (layer_bytes, "layer-digest", False),
    (gzip_labelled_zstd, "compression", False),
    (history_count, "history-count", True),
    (platform_without_os, "platform", True),
    (rootfs_type, "rootfs-type", True),
    (layer_count, "layer-count", True),
    (schema_version, "schema-version", True),
    (media_type_conflict, "media-type", True),
    (missing_layer, "blob-missing", True),
    (empty_config_type, "artifact-type", True),
    (layout_version, "layout-version", True),
    (manifest_bytes, "manifest-size", True),
    (wrong_embedded_data, "descriptor-data", True),
]


@pytest.mark.parametrize(("edit", "check_id", "metadata"), BROKEN, ids=[b[1] for b in BROKEN])
def test_broken_layout_is_caught(
    run_occystrap: OccystrapRunner,
    busybox_layout: LayoutInfo,
    tmp_path: Path,
    edit: Callable[[Layout], None],
    check_id: str,
    metadata: bool,
) -> None:
    lay = Layout(busybox_layout, tmp_path / "img")
    edit(lay)
    status, report = check(run_occystrap, lay.uri, "--full")
    assert status == 1 and check_id in ids(report, "error"), report
    status, report = check(run_occystrap, lay.uri)
    if metadata:
        assert status == 1 and check_id in ids(report, "error"), report
    else:
        assert check_id not in ids(report), report


def test_warnings_do_not_fail(
    run_occystrap: OccystrapRunner, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    lay = Layout(busybox_layout, tmp_path / "img")
    missing_media_type(lay)
    status, report = check(run_occystrap, lay.uri, "--full")
    assert status == 0 and ids(report, "warning") == {"media-type-missing"}, report


def test_nondistributable_layer(
    run_occystrap: OccystrapRunner, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    lay = Layout(busybox_layout, tmp_path / "img")
    m = lay.manifest()
    layer = m["layers"][0]
    layer["mediaType"] = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    layer["urls"] = ["https://example.invalid/layer.tar.gz"]
    lay.set_manifest(m)
    lay.blob(layer["digest"]).unlink()  # lives at its urls, not in the layout
    status, report = check(run_occystrap, lay.uri, "--full")
    assert status == 0 and {"nondistributable", "not-checked"} <= ids(report, "info"), report
    del layer["urls"]
    lay.set_manifest(m)
    status, report = check(run_occystrap, lay.uri)
    assert status == 1 and "blob-missing" in ids(report, "error"), report


# -- broken layer contents ------------------------------------------------------------------

LAYER_DEFECTS = {
    "bare-whiteout": ([directory("etc"), file("etc/.wh.")], "whiteout", "error"),
    "dot-whiteout": ([file(".wh..")], "whiteout", "error"),
    "duplicate": ([file("a", "1"), file("b"), file("./a", "2")], "duplicate-path", "error"),
    "duplicate-dir": ([directory("d"), directory("d/")], "duplicate-path", "error"),
    "escape": ([file("../evil", "x")], "unsafe-path", "error"),
    "whiteout-content": ([file(".wh.gone", "data")], "whiteout-content", "warning"),
    "aufs": ([file(".wh..wh.plnk")], "whiteout-aufs", "warning"),
    "negative-mtime": ([file("old", mtime=-86400)], "tar-timestamp", "warning"),
    "setuid-writable": ([file("bin/su", "x", 0o4777)], "tar-permissions", "warning"),
    "absolute": ([file("/abs", "x")], "absolute-path", "warning"),
}


@pytest.fixture(scope="module")
def defect_layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LayoutInfo]:
    root = tmp_path_factory.mktemp("defects")
    return {
        name: images.build_oci_layout(root / name, [entries])
        for name, (entries, _, _) in LAYER_DEFECTS.items()
    }


@pytest.mark.parametrize("name", sorted(LAYER_DEFECTS))
def test_layer_defects(
    run_occystrap: OccystrapRunner, defect_layouts: dict[str, LayoutInfo], name: str
) -> None:
    _, check_id, severity = LAYER_DEFECTS[name]
    status, report = check(run_occystrap, f"ocidir://{defect_layouts[name].path}", "--full")
    assert check_id in ids(report, severity), report
    assert status == (1 if severity == "error" else 0), report
    hits = [r for r in report["results"] if r["id"] == check_id]
    assert all(r["layer"] == 0 for r in hits), hits
    _, metadata = check(run_occystrap, f"ocidir://{defect_layouts[name].path}")
    assert check_id not in ids(metadata)  # layer contents are only read with --full


def test_the_same_defects_in_docker_archives(
    run_occystrap: OccystrapRunner, defect_layouts: dict[str, LayoutInfo], tmp_path: Path
) -> None:
    flavours = {
        "legacy": images.docker_save_legacy,
        "podman": images.docker_save_podman,
        "docker25": images.docker_save_oci,
        "containerd": images.docker_save_containerd,
    }
    for i, (flavour, save) in enumerate(flavours.items()):
        name = ["bare-whiteout", "duplicate", "escape", "duplicate-dir"][i]
        archive = save(defect_layouts[name], tmp_path / f"{flavour}.tar")
        status, report = check(run_occystrap, f"tar://{archive}", "--full")
        assert status == 1 and LAYER_DEFECTS[name][1] in ids(report, "error"), (flavour, report)


HOSTILE = {
    "traversal": {"unsafe-path"},
    "absolute": {"absolute-path"},
    "symlink-escape": {"unsafe-path"},
    "hardlink-escape": {"unsafe-path", "absolute-path", "duplicate-path"},
    "duplicate": {"duplicate-path"},
    "bare-whiteout": {"whiteout"},
    "device": set(),
}


@pytest.mark.parametrize("kind", images.HOSTILE_KINDS)
def test_hostile_layers(run_occystrap: OccystrapRunner, tmp_path: Path, kind: str) -> None:
    layout = images.hostile_oci_layout(kind, tmp_path / "layout")
    archive = images.hostile_docker_archive(kind, tmp_path / "archive.tar")
    for source in (f"ocidir://{layout.path}", f"tar://{archive}"):
        status, report = check(run_occystrap, source, "--full")
        found = ids(report, "error") | ids(report, "warning")
        assert found == HOSTILE[kind], (source, report)
        assert status == (1 if ids(report, "error") else 0)


@pytest.mark.parametrize(
    ("overrides", "check_id", "full"),
    [
        ({"rootfs": {"diff_ids": ["sha256:" + "0" * 64]}}, "diff-id", True),
        ({"history": [{"created_by": "a"}, {"created_by": "b"}]}, "history-count", False),
        ({"rootfs": {"type": "layer"}}, "rootfs-type", False),
    ],
    ids=["diff-id", "history-count", "rootfs-type"],
)
@pytest.mark.parametrize("flavour", ["legacy", "podman", "docker25", "gzip-stream"])
def test_broken_config_in_docker_archives(
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
    overrides: dict[str, Any],
    check_id: str,
    full: bool,
    flavour: str,
) -> None:
    info = images.build_oci_layout(tmp_path / "img", [[file("a", "a")]], config_overrides=overrides)
    if flavour == "docker25":
        archive = images.docker_save_oci(info, tmp_path / "x.tar")
    elif flavour == "podman":
        archive = images.docker_save_podman(info, tmp_path / "x.tar")
    else:
        archive = images.docker_save_legacy(info, tmp_path / "x.tar")
    if flavour == "gzip-stream":
        # read through the tar transport itself (compressed archives are read as a stream)
        archive = images.gzip_archive(archive, tmp_path / "x.tar.gz")
        done = run_occystrap("check", "--full", f"tar://{archive}")
        assert done.returncode == 1, done
        return
    status, report = check(run_occystrap, f"tar://{archive}", *(["--full"] if full else []))
    assert status == 1 and check_id in ids(report, "error"), report


def test_docker_archive_with_a_wrong_config_name(
    run_occystrap: OccystrapRunner, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    good = images.docker_save_legacy(busybox_layout, tmp_path / "good.tar")
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.endswith(".json") and "/" not in member.name and data:
                data = data.replace(b'"amd64"', b'"arm64"')
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    status, report = check(run_occystrap, f"tar://{bad}")
    assert status == 1 and "config-digest" in ids(report, "error"), report


# -- every good image and every output of ours passes ---------------------------------------


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory,
    busybox_layout: LayoutInfo,
    edge_layout: LayoutInfo,
    busybox_archive: Path,
    edge_archive: Path,
) -> dict[str, str]:
    root = tmp_path_factory.mktemp("corpus")
    zstd = images.build_oci_layout(root / "zstd", images.edge_case_layers(), compression="zstd")
    plain = images.build_oci_layout(root / "plain", images.busybox_layers(), compression="none")
    legacy = images.docker_save_legacy(edge_layout, root / "legacy.tar", gzip_layers=True)
    skopeo("copy", edge_layout.ref, f"oci-archive:{root / 'oci-archive.tar'}:latest")
    return {
        "oci-archive": f"tar://{root / 'oci-archive.tar'}",
        "busybox-layout": f"ocidir://{busybox_layout.path}",
        "edge-layout": f"ocidir://{edge_layout.path}:latest",
        "zstd-layout": f"ocidir://{zstd.path}",
        "uncompressed-layout": f"ocidir://{plain.path}",
        "skopeo-busybox": f"tar://{busybox_archive}",
        "skopeo-edge": f"tar://{edge_archive}",
        "legacy-gzip-layers": f"tar://{legacy}",
        "docker25": f"tar://{images.docker_save_oci(edge_layout, root / 'oci.tar')}",
        "containerd": f"tar://{images.docker_save_containerd(edge_layout, root / 'ctr.tar')}",
        "podman": f"tar://{images.docker_save_podman(edge_layout, root / 'podman.tar')}",
        "multi": f"tar://{images.docker_save_multi([(busybox_layout, ['a/b:1']), (edge_layout, ['a/e:1'])], root / 'multi.tar')}?index=1",
        "gzip-wrapped": f"tar://{images.gzip_archive(legacy, root / 'legacy.tar.gz')}",
    }


def _skopeo_ref(uri: str) -> str | None:
    if uri.startswith("ocidir://"):
        return "oci:" + uri[len("ocidir://") :]
    if uri.endswith("oci-archive.tar"):
        return "oci-archive:" + uri[len("tar://") :]
    if uri.startswith("tar://") and ".gz" not in uri and "?" not in uri:
        return "docker-archive:" + uri[len("tar://") :]
    return None


@pytest.mark.parametrize(
    "name",
    [
        "busybox-layout", "edge-layout", "zstd-layout", "uncompressed-layout", "skopeo-busybox",
        "skopeo-edge", "legacy-gzip-layers", "docker25", "containerd", "podman", "multi",
        "gzip-wrapped", "oci-archive",
    ],
)  # fmt: skip
def test_corpus_and_our_outputs_pass(
    run_occystrap: OccystrapRunner, corpus: dict[str, str], tmp_path: Path, name: str
) -> None:
    source = corpus[name]
    ref = _skopeo_ref(source)
    if ref is not None:
        skopeo("inspect", ref)  # the independent tool accepts the input
    report = passes(run_occystrap, source)
    assert "not-checked" not in ids(report), report  # --full leaves nothing unread
    outputs = {
        "tar": f"tar://{tmp_path / 'out.tar'}",
        "ocidir": f"ocidir://{tmp_path / 'layout'}:v1",
        "ocidir-zstd": f"ocidir://{tmp_path / 'zstd'}:v1",
        "normalized": f"ocidir://{tmp_path / 'norm'}:v1",
        "excluded-tar": f"tar://{tmp_path / 'excl.tar'}",
    }
    extra: dict[str, list[str]] = {
        "ocidir-zstd": ["--compression", "zstd"],
        "normalized": [],
        "excluded-tar": [],
    }
    filters: dict[str, list[str]] = {
        "normalized": ["-f", "normalize-timestamps:ts=0"],
        "excluded-tar": ["-f", "exclude:pattern=etc/**"],
    }
    for kind, dest in outputs.items():
        done = run_occystrap(*extra.get(kind, []), "process", source, dest, *filters.get(kind, []))
        assert done.returncode == 0, (kind, done.stderr.decode())
        passes(run_occystrap, dest)


def test_metadata_mode_reads_no_layer(
    monkeypatch: pytest.MonkeyPatch, edge_layout: LayoutInfo, edge_archive: Path
) -> None:
    """Metadata mode opens no layer stream (in-process: any layer open fails the test)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a layer was read in metadata mode")

    monkeypatch.setattr(stores.LayoutStore, "open", refuse)
    monkeypatch.setattr(stores.ArchiveStore, "open", refuse)
    monkeypatch.setattr(stores.ArchiveStore, "stream", refuse)
    for source in (f"ocidir://{edge_layout.path}", f"tar://{edge_archive}"):
        report = run_check(source)
        assert report.ok and "not-checked" in report.ids(Severity.INFO), report
    for source in (f"ocidir://{edge_layout.path}", f"tar://{edge_archive}"):
        with pytest.raises(AssertionError, match="metadata mode"):  # the traps do work
            run_check(source, full=True)


# -- multi-platform indexes -----------------------------------------------------------------


def _multi_platform(
    tmp: Path, entry_edit: Callable[[list[dict[str, Any]]], None] | None = None
) -> Path:
    root = tmp / "multi"
    amd = images.build_oci_layout(root, [[file("amd", "1")]], tag="amd")
    arm = images.build_oci_layout(
        root, [[file("arm", "2")]], {"architecture": "arm64", "variant": "v8"}, tag="arm"
    )
    entries = [
        {"mediaType": MANIFEST_TYPE, "digest": info.manifest_digest, "size": info.manifest_size,
         "platform": platform}
        for info, platform in (
            (amd, {"architecture": "amd64", "os": "linux"}),
            (arm, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
        )
    ]  # fmt: skip
    if entry_edit is not None:
        entry_edit(entries)
    nested = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }
    )
    digest = "sha256:" + hashlib.sha256(nested).hexdigest()
    (root / "blobs" / "sha256" / digest[7:]).write_bytes(nested)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
             "size": len(nested), "annotations": {"org.opencontainers.image.ref.name": "multi"}}
        ],
    }  # fmt: skip
    (root / "index.json").write_bytes(canonical_json(index))
    return root


def test_multi_platform_index(run_occystrap: OccystrapRunner, tmp_path: Path) -> None:
    root = _multi_platform(tmp_path)
    skopeo("inspect", f"oci:{root}:multi")
    passes(run_occystrap, f"ocidir://{root}:multi")
    status, report = check(run_occystrap, f"ocidir://{root}:multi?platform=linux/arm64", "--full")
    assert status == 0, report


def test_index_defects(run_occystrap: OccystrapRunner, tmp_path: Path) -> None:
    def break_entries(entries: list[dict[str, Any]]) -> None:
        del entries[0]["platform"]["os"]  # platform without os
        del entries[1]["platform"]  # an image entry without a platform
        entries.append({"mediaType": MANIFEST_TYPE, "digest": "sha256:" + "1" * 64, "size": 10})

    root = _multi_platform(tmp_path, break_entries)
    status, report = check(run_occystrap, f"ocidir://{root}:multi", "--full")
    assert status == 1 and "platform" in ids(report, "error"), report
    assert {"platform-missing", "index-child"} <= ids(report, "warning"), report


def test_platform_mismatch(run_occystrap: OccystrapRunner, tmp_path: Path) -> None:
    def swap(entries: list[dict[str, Any]]) -> None:
        entries[0]["platform"], entries[1]["platform"] = (
            entries[1]["platform"],
            entries[0]["platform"],
        )

    root = _multi_platform(tmp_path, swap)
    status, report = check(run_occystrap, f"ocidir://{root}:multi")
    assert status == 0 and "platform-mismatch" in ids(report, "warning"), report


# -- output formats, exit status, bounded memory --------------------------------------------


def test_text_output(
    run_occystrap: OccystrapRunner, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    lay = Layout(busybox_layout, tmp_path / "img")
    wrong_diff_id(lay)
    missing_media_type(lay)
    done = run_occystrap("check", "--full", lay.uri)
    assert done.returncode == 1
    lines = done.stdout.decode().splitlines()
    assert lines[0] == f"Checking {lay.uri} (full)"
    assert lines.index("Errors:") < lines.index("Warnings:") < lines.index("Info:")
    assert any(line.startswith("  [diff-id] layer 0: ") for line in lines), lines
    assert any(line.startswith("  [media-type-missing] ") for line in lines), lines
    match = SUMMARY.match(lines[-1])
    assert match and match.groups() == ("full", "1", "1"), lines[-1]
    assert done.stderr == b""
    ok = run_occystrap("check", f"ocidir://{busybox_layout.path}")
    assert ok.returncode == 0 and SUMMARY.match(ok.stdout.decode().splitlines()[-1])
    assert ok.stdout.decode().splitlines()[-1].startswith("Check complete (metadata): 0 error(s)")


def test_many_results_are_capped(run_occystrap: OccystrapRunner, tmp_path: Path) -> None:
    entries = [file(f"f{i}") for i in range(30)] * 2  # 30 duplicate paths
    info = images.build_oci_layout(tmp_path / "img", [entries])
    status, report = check(run_occystrap, f"ocidir://{info.path}", "--full")
    dups = [r for r in report["results"] if r["id"] == "duplicate-path"]
    assert status == 1 and len(dups) == 11, dups
    assert "20 more" in dups[-1]["message"]


def test_path_set_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = PathSet(limit=5000)
    assert all(seen.add(f"p/{i}") for i in range(5000))
    assert not any(seen.add(f"p/{i}") for i in range(5000))
    assert seen.full and seen.count == 5000
    monkeypatch.setattr(layer_checks, "MAX_TRACKED_PATHS", 10)
    data = tar_bytes([file(f"x{i}") for i in range(20)] + [file("x15")])
    report = Report("test", "full")
    expect = LayerExpect(0, None, None, None, Digest.of_bytes(data), "layer 0")
    check_layer(io.BytesIO(data), expect, report)
    assert report.ids() == {"check-limit"}  # the late duplicate is past the bound


@pytest.mark.slow
def test_full_check_streams_in_bounded_memory(tmp_path: Path, peak_rss: Callable[..., int]) -> None:
    import sys

    big = images.big_layer_file(tmp_path / "big.tar", 300 << 20, files=3)
    info = images.build_oci_layout(tmp_path / "img", [big.path], compression="none")
    cmd = [sys.executable, "-m", "occystrap", "check", "--full", f"ocidir://{info.path}"]
    rss = peak_rss(cmd)
    assert rss < 100 << 20, f"peak RSS {rss >> 20} MiB while checking a 300 MiB layer"


# -- structural checks agree with the OCI JSON schemas --------------------------------------


def _doc_errors(kind: str, doc: dict[str, Any]) -> set[str]:
    report = Report("x", "metadata")
    if kind == "manifest":
        check_manifest(doc, "manifest", report, None)
    elif kind == "config":
        check_config(doc, "config", report)
    else:
        check_index(doc, "index", report, None, layout=True)
    return report.ids(Severity.ERROR)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DELETE:
            del target[int(last) if isinstance(target, list) else last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return apply


_DELETE = object()
MUTATIONS: list[tuple[str, str, Any]] = [
    ("manifest", "config", _DELETE),
    ("manifest", "config", "not an object"),
    ("manifest", "layers", {}),
    ("manifest", "schemaVersion", 1),
    ("manifest", "layers.0.digest", _DELETE),
    ("manifest", "layers.0.size", -1),
    ("manifest", "layers.0.size", "12"),
    ("manifest", "layers.0.digest", "sha256"),
    ("manifest", "layers.0.mediaType", "notamediatype"),
    ("manifest", "config.urls", "http://x"),
    ("manifest", "annotations", {"a": 1}),
    ("manifest", "unknownField", {"kept": True}),
    ("config", "architecture", _DELETE),
    ("config", "os", _DELETE),
    ("config", "os", 5),
    ("config", "rootfs", _DELETE),
    ("config", "rootfs.type", "foo"),
    ("config", "rootfs.diff_ids", "sha256:x"),
    ("config", "config.Env", "A=1"),
    ("config", "config.Cmd", 3),
    ("config", "config.Labels", {"a": 1}),
    ("config", "history", {}),
    ("config", "history.0.empty_layer", "yes"),
    ("config", "unknownField", 1),
    ("index", "manifests", None),
    ("index", "manifests", _DELETE),
    ("index", "manifests.0.size", _DELETE),
    ("index", "manifests.0.platform", {"architecture": "amd64"}),
    ("index", "manifests.0.platform", {"architecture": "amd64", "os": 7}),
    ("index", "schemaVersion", 1),
    ("index", "annotations", {"a": 1}),
    ("index", "unknownField", []),
]


@pytest.mark.parametrize(("kind", "path", "value"), MUTATIONS)
def test_structural_checks_agree_with_the_schemas(
    busybox_layout: LayoutInfo, kind: str, path: str, value: Any
) -> None:
    base = {
        "manifest": busybox_layout.manifest,
        "config": busybox_layout.config,
        "index": json.loads((busybox_layout.path / "index.json").read_bytes()),
    }[kind]
    assert not schemas.errors(kind, base) and not _doc_errors(kind, base)  # type: ignore[arg-type]
    doc = _edit(_set(path, value))(base)
    by_schema = schemas.errors(kind, doc)  # type: ignore[arg-type]
    ours = _doc_errors(kind, doc)
    assert bool(by_schema) == bool(ours), (by_schema, ours)


def test_stricter_than_the_schemas(busybox_layout: LayoutInfo) -> None:
    """Where the spec text is stricter than the (older) vendored schemas, so are we."""
    doc = _edit(_set("layers.0.digest", "sha256:ABC"))(busybox_layout.manifest)
    assert not schemas.errors("manifest", doc) and "descriptor" in _doc_errors("manifest", doc)
    empty = _edit(_set("layers", []))(busybox_layout.manifest)
    assert schemas.errors("manifest", empty) and not _doc_errors("manifest", empty)  # a warning
    assert CONFIG_TYPE == busybox_layout.manifest["config"]["mediaType"]


# -- documentation and errors ----------------------------------------------------------------


def test_every_check_id_is_documented() -> None:
    text = (DOCS / "check.md").read_text()
    for check_id, (severity, _) in CHECKS.items():
        row = re.search(rf"^\| `{re.escape(check_id)}` \| (\w+) \|", text, re.M)
        assert row, f"{check_id} is not in docs/check.md"
        assert row.group(1) == str(severity), check_id
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, re.M))
    assert documented == set(CHECKS)


@pytest.mark.parametrize("command", ["check", "info"])
def test_one_line_errors(
    run_occystrap: OccystrapRunner, busybox_layout: LayoutInfo, tmp_path: Path, command: str
) -> None:
    bad_json = tmp_path / "bad-json.tar"
    with tarfile.open(bad_json, "w") as tar:
        data = b'[{"Config": "x.json", "Layers": [}'
        member = tarfile.TarInfo("manifest.json")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    bad_index = Layout(busybox_layout, tmp_path / "layout")
    (bad_index.root / "index.json").write_text("{not json")
    cases = [
        ([f"tar://{tmp_path / 'missing.tar'}"], 1, "no such file"),
        ([f"ocidir://{tmp_path / 'missing'}"], 1, "missing"),
        ([f"tar://{bad_json}"], 1, "not valid JSON"),
        ([bad_index.uri], 1, "not valid JSON"),
        (["nosuch://x"], 2, "unknown scheme"),
        (["tar://"], 2, ""),
        ([f"tar://{bad_json}?bogus=1"], 2, "bogus"),
    ]
    for args, status, text in cases:
        done = run_occystrap(command, *args)
        err = done.stderr.decode()
        assert done.returncode == status, (args, err)
        assert err.count("\n") == 1 and err.startswith("occystrap: error: "), (args, err)
        assert text in err and "Traceback" not in err, (args, err)
        assert done.stdout == b"", args
    usage = run_occystrap(command)
    assert usage.returncode == 2 and usage.stderr.decode().count("\n") == 1, usage.stderr


# -- registries and daemons ------------------------------------------------------------------


def test_registry_images(
    run_occystrap: OccystrapRunner,
    registry_plain: Registry,
    busybox_layout: LayoutInfo,
    tmp_path: Path,
) -> None:
    reg = registry_plain

    def uri(repo: str) -> str:
        return f"registry://{reg.host}/{repo}:v1?insecure=true"

    root = _multi_platform(tmp_path)
    skopeo(
        "copy",
        "--all",
        *reg.skopeo_args("dest"),
        f"oci:{root}:multi",
        reg.ref("lab/check-multi", "v1"),
    )
    report = passes(run_occystrap, uri("lab/check-multi"))
    assert "not-checked" not in ids(report), report  # the other platform was fetched and checked
    status, _ = check(run_occystrap, uri("lab/check-multi") + "&platform=linux/arm64", "--full")
    assert status == 0
    for edit, check_id, full in (
        (wrong_diff_id, "diff-id", True),
        (history_count, "history-count", False),
    ):
        lay = Layout(busybox_layout, tmp_path / check_id)
        edit(lay)
        repo = f"lab/check-{check_id}"
        skopeo("copy", *reg.skopeo_args("dest"), f"oci:{lay.root}:latest", reg.ref(repo, "v1"))
        status, report = check(run_occystrap, uri(repo), *(["--full"] if full else []))
        assert status == 1 and check_id in ids(report, "error"), report


def test_registry_index_with_a_missing_child(
    run_occystrap: OccystrapRunner, registry_plain: Registry, tmp_path: Path
) -> None:
    reg = registry_plain
    root = _multi_platform(tmp_path)
    target = reg.ref("lab/check-sparse", "v1")
    skopeo("copy", "--all", *reg.skopeo_args("dest"), f"oci:{root}:multi", target)
    top = json.loads((root / "index.json").read_bytes())["manifests"][0]["digest"]
    nested = json.loads((root / "blobs" / "sha256" / top[7:]).read_bytes())
    arm_digest = nested["manifests"][1]["digest"]
    skopeo("delete", *reg.skopeo_args("plain"), reg.ref("lab/check-sparse", "@" + arm_digest))
    # the index stays; one of its children is gone (a sparse index)
    status, report = check(
        run_occystrap, f"registry://{reg.host}/lab/check-sparse:v1?insecure=true"
    )
    assert status == 0 and "index-child" in ids(report, "warning"), report


def test_docker_daemon_image(
    run_occystrap: OccystrapRunner, podman: Daemon, tmp_path: Path
) -> None:
    tag = f"occy-check-{uuid.uuid4().hex[:8]}/two:v1"
    layers = [*images.busybox_layers(), [directory("opt"), file("opt/a.txt", "hello\n")]]
    layout = images.build_oci_layout(tmp_path / "layout", layers)
    archive = images.to_docker_archive(layout, "latest", tmp_path / "two.tar", tag)
    with DaemonClient(str(podman.socket)) as client, open(archive, "rb") as f:
        client.load_image(f)
    try:
        source = f"docker://{tag}?socket={podman.socket}"
        report = passes(run_occystrap, source)
        assert "format" in ids(report, "info"), report
        status, _ = check(run_occystrap, source)
        assert status == 0
        done = run_occystrap("process", source, f"ocidir://{tmp_path / 'out'}:v1")
        assert done.returncode == 0, done.stderr.decode()
        passes(run_occystrap, f"ocidir://{tmp_path / 'out'}:v1")
    finally:
        with DaemonClient(str(podman.socket)) as client:
            client.remove_image(tag, force=True)
