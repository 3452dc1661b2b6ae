"""Fixtures of the reliability tests: the image killed mid-copy, registry probes, isolation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lab import images
from lab.ocilayout import LayoutInfo
from lab.registry import Registry
from lab.tarspec import file
from lab.tools import skopeo

from .harness import KillImage, isolated_env


@pytest.fixture(scope="session")
def kill_layout(lab_dir: Path) -> LayoutInfo:
    work = lab_dir / "reliability"
    big1 = images.big_layer_file(work / "big17.tar", 17 << 20, seed=17)
    big2 = images.big_layer_file(work / "big34.tar", 34 << 20, seed=34, files=2)
    small = [file("etc/reliability.txt", "kill me softly\n" * 200)]
    return images.build_oci_layout(
        work / "kill-layout", [images.busybox_layers()[0], big1.path, big2.path, small]
    )


@pytest.fixture(scope="session")
def kill_archive(kill_layout: LayoutInfo) -> Path:
    """The kill image as a docker-archive (uncompressed layers), written by skopeo."""
    out = kill_layout.path.parent / "kill.docker.tar"
    return images.to_docker_archive(kill_layout, "latest", out, "lab/kill:v1")


@pytest.fixture(scope="session")
def kill_image(registry_plain: Registry, kill_layout: LayoutInfo) -> KillImage:
    repo = "reliability/kill"
    skopeo(
        "copy", *registry_plain.skopeo_args("dest"), kill_layout.ref, registry_plain.ref(repo, "v1")
    )
    raw = skopeo(
        "inspect", "--raw", *registry_plain.skopeo_args("plain"), registry_plain.ref(repo, "v1")
    ).stdout
    doc = json.loads(raw)
    blobs = {d["digest"]: d["size"] for d in [doc["config"], *doc["layers"]]}
    digest = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    return KillImage(kill_layout, repo, digest, blobs)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)
