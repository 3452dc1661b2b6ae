"""The sources of the round-trip matrix: one fixture image read through one input, with what
every output written from it must show (``Expect``) and the image ``umoci`` unpacks as the
reference for expanded outputs. Sources are built on first use and shared by a test module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from conformance.evidence import read_layout
from conformance.judges import Expect, Judges, Reference, umoci_reference
from lab import images
from lab.daemon import Daemon
from lab.ocilayout import LayoutInfo
from lab.registry import Registry
from lab.tools import skopeo
from occystrap import api

#: The filtered input: files removed from every layer (etc/hostname is in two layers of the
#: edge image, etc/group in busybox's only layer).
EXCLUDED = ("etc/group", "etc/hostname")
FILTER = "exclude:pattern=" + ",".join(EXCLUDED)

#: Entries of the edge-case image that podman cannot hold: it applies the layer (the whiteout
#: deletes the file the same layer added), then cannot re-create the layer tar on export
#: ("reading blob ...: open .../opt/same/tmp.txt: no such file or directory").
PODMAN_UNSAFE = {"opt/same/tmp.txt", "opt/same/.wh.tmp.txt"}


@dataclass(frozen=True)
class Source:
    uri: str  # what the cell reads
    stdin: Path | None  # bytes fed to standard input (tar://-)
    file_uri: str  # the same image read from a file, for in-process comparisons
    expect: Expect
    layout: LayoutInfo  # the image, as an OCI layout (what umoci unpacks for the reference)
    spec_only: bool = True  # the image has the entries where umoci departs from the spec
    filters: tuple[str, ...] = ()
    edge_expect: bool = True  # an edge image as lab.edgecase.EXPECT describes it


class World:
    """Fixture images, their sources (built on first use) and the judges of this module."""

    def __init__(self, request: pytest.FixtureRequest, work: Path) -> None:
        self.request = request
        self.work = work
        self.layouts: dict[str, LayoutInfo] = {
            "edge": request.getfixturevalue("edge_layout"),
            "busybox": request.getfixturevalue("busybox_layout"),
        }
        self.judges = Judges(work, lambda: self.podman)
        self._sources: dict[tuple[str, str], Source] = {}
        self._references: dict[Path, Reference] = {}

    @property
    def podman(self) -> Daemon:
        daemon: Daemon = self.request.getfixturevalue("podman")
        return daemon

    @property
    def registry(self) -> Registry:
        reg: Registry = self.request.getfixturevalue("registry_plain")
        return reg

    def reference(self, src: Source) -> Reference:
        """``umoci unpack`` of the source's image, once per image."""
        path = src.layout.path
        if path not in self._references:
            work = self.work / f"reference-{path.name}"
            work.mkdir(exist_ok=True)
            edge = "edge" in path.name and src.edge_expect
            self._references[path] = umoci_reference(path, "latest", work, edge, src.spec_only)
        return self._references[path]

    def source(self, image: str, kind: str) -> Source:
        if (image, kind) not in self._sources:
            self._sources[image, kind] = self._build(image, kind)
        return self._sources[image, kind]

    def _podman_safe(self, image: str) -> LayoutInfo:
        if image != "edge":
            return self.layouts[image]
        layers = [
            [e for e in layer if e.name not in PODMAN_UNSAFE] for layer in images.edge_case_layers()
        ]
        return images.build_oci_layout(self.work / "edge-for-podman", layers)

    def _layers(self, image: str) -> list[list[images.TarSpec]]:
        return images.edge_case_layers() if image == "edge" else images.busybox_layers()

    def _filtered(self, image: str) -> Source:
        """The OCI layout through ``-f exclude``. The reference is the same image built by the
        lab without the excluded files; the expected config and diff_ids are those of a first
        run, checked here against the source: only ``rootfs`` changed, and layers with nothing
        to remove kept their diff_id and their compressed blob."""
        info = self.layouts[image]
        layers = [
            [e for e in layer if e.name.removeprefix("./") not in EXCLUDED]
            for layer in self._layers(image)
        ]
        reference = images.build_oci_layout(self.work / f"{image}-filtered", layers)
        probe = self.work / "sources" / f"{image}-filtered-probe"
        uri = f"ocidir://{info.path}:latest"
        api.process(uri, f"ocidir://{probe}:p", [FILTER])
        got = read_layout(probe, "p")
        assert {k: v for k, v in got.config.items() if k != "rootfs"} == {
            k: v for k, v in info.config.items() if k != "rootfs"
        }, "the filter changed more of the config than rootfs"
        changed = [
            len(layer) != len(orig) for layer, orig in zip(layers, self._layers(image), strict=True)
        ]
        for i, was_changed in enumerate(changed):
            if was_changed:
                assert got.diff_ids[i] != info.diff_ids[i], f"layer {i}: diff_id not updated"
            else:
                assert got.diff_ids[i] == info.diff_ids[i], f"layer {i} was rewritten"
                assert got.layer_digests[i] == info.layer_digests[i], f"layer {i} recompressed"
        expect = Expect(
            got.config_digest,
            got.diff_ids,
            json.dumps(got.config, sort_keys=True),
            repo_tags=(),
        )
        return Source(uri, None, uri, expect, reference, filters=(FILTER,), edge_expect=False)

    def _build(self, image: str, kind: str) -> Source:
        info = self._podman_safe(image) if kind == "docker" else self.layouts[image]
        tag = f"lab/{image}:latest"
        config = json.dumps(info.config, sort_keys=True)
        base = Expect(info.config_digest, tuple(info.diff_ids), config, repo_tags=(tag,))
        out = self.work / "sources" / f"{image}-{kind}.tar"
        out.parent.mkdir(exist_ok=True)
        if kind == "tar-legacy":
            path = images.docker_save_legacy(info, out, [tag])
        elif kind == "tar-docker25":
            path = images.docker_save_oci(info, out, [tag])
        elif kind == "tar-podman":
            path = images.docker_save_podman(info, out, [tag])
        elif kind == "tar-containerd":  # original gzip blobs behind a nested index
            path = images.docker_save_containerd(info, out, [tag])
            stored = replace(
                base, layer_digests=tuple(info.layer_digests), manifest_digest=info.manifest_digest
            )
            return Source(f"tar://{path}", None, f"tar://{path}", stored, info)
        elif kind == "tar-stdin":  # `docker save IMAGE | gzip | occystrap process tar://- ...`
            plain = images.docker_save_oci(info, out.with_suffix(".plain"), [tag])
            path = images.gzip_archive(plain, out.with_suffix(".tar.gz"))
            return Source("tar://-", path, f"tar://{path}", base, info)
        elif kind == "ocidir":
            stored = replace(
                base,
                repo_tags=(),  # an OCI layout names a tag, not a repository
                layer_digests=tuple(info.layer_digests),
                manifest_digest=info.manifest_digest,
            )
            uri = f"ocidir://{info.path}:latest"
            return Source(uri, None, uri, stored, info)
        elif kind == "ocidir-zstd":  # the same image with zstd layers
            path = self.work / "sources" / f"{image}-zstd"
            zstd = images.build_oci_layout(path, self._layers(image), compression="zstd")
            assert zstd.diff_ids == info.diff_ids and zstd.config_digest == info.config_digest
            stored = replace(
                base,
                repo_tags=(),
                layer_digests=tuple(zstd.layer_digests),
                manifest_digest=zstd.manifest_digest,
            )
            uri = f"ocidir://{path}:latest"
            return Source(uri, None, uri, stored, info)  # umoci unpacks the gzip twin
        elif kind == "ocidir-filtered":
            return self._filtered(image)
        elif kind == "registry":
            reg = self.registry
            skopeo("copy", "--dest-tls-verify=false", info.ref, f"docker://{reg.host}/{tag}")
            stored = replace(
                base,
                repo_tags=(f"{reg.host}/{tag}",),
                layer_digests=tuple(info.layer_digests),
                manifest_digest=info.manifest_digest,
            )
            uri = f"registry://{reg.host}/{tag}?insecure=true"
            return Source(uri, None, uri, stored, info)
        elif kind == "docker":
            daemon, name = self.podman, f"conformance/{image}:latest"
            archive = images.to_docker_archive(info, "latest", out, name)
            resp = daemon.load(archive)
            assert resp.status == 200, resp.body[:300]
            uri = f"docker://{name}?socket={daemon.socket}"
            expect = replace(base, repo_tags=(name,))
            return Source(uri, None, uri, expect, info, spec_only=info is self.layouts[image])
        else:
            raise AssertionError(kind)
        return Source(f"tar://{path}", None, f"tar://{path}", base, info)
