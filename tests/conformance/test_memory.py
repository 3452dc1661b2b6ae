"""Memory stays flat: one image with a 1 GiB layer of incompressible data goes through the real
command with a peak RSS under 150 MB, for tar -> ocidir (gzip compression on the way), ocidir
-> tar (decompression), tar -> dir?expand=true and ocidir -> oci:// bundle. Peak RSS is
measured by ``lab.rss`` in a small wrapper process. Everything written is removed afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.evidence import read_layout, sha256_file
from conformance.judges import require_module
from lab import images
from lab.archive import open_archive
from lab.ocilayout import canonical_json
from lab.rss import peak_rss
from occystrap.transports import TRANSPORTS

pytestmark = pytest.mark.slow

LIMIT = 150 * 1000 * 1000
SIZE = 1 << 30
CLI = [sys.executable, "-m", "occystrap", "--quiet"]
BIG_FILE = "big/random-0.bin"


@dataclass(frozen=True)
class Big:
    work: Path
    archive: Path  # legacy docker-save tarball
    diff_id: str
    layout: Path  # OCI layout written by occystrap from the archive (gzip layer), ref "big"
    rss_tar_to_ocidir: int


def _archive(work: Path) -> tuple[Path, str]:
    layer = images.big_layer_file(work / "layer.tar", SIZE)
    config = canonical_json({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created_by": "big"}],
    })  # fmt: skip
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    out = work / "big.tar"
    with open_archive(out) as ar:
        ar.dir("big0")
        ar.file("big0/layer.tar", layer.path)
        ar.data(config_name, config)
        ar.json(
            "manifest.json",
            [{"Config": config_name, "RepoTags": ["lab/big:1"], "Layers": ["big0/layer.tar"]}],
        )
    layer.path.unlink()
    return out, layer.diff_id


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Big]:
    """The archive, and the OCI layout the first measured run (tar -> ocidir) writes from it."""
    work = tmp_path_factory.mktemp("memory")
    try:
        archive, diff_id = _archive(work)
        layout = work / "layout"
        rss = peak_rss([*CLI, "process", f"tar://{archive}", f"ocidir://{layout}:big"])
        yield Big(work, archive, diff_id, layout, rss)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def test_tar_to_ocidir(big: Big) -> None:
    assert big.rss_tar_to_ocidir < LIMIT, f"peak RSS {_mib(big.rss_tar_to_ocidir)}"
    image = read_layout(big.layout, "big")
    assert image.diff_ids == (big.diff_id,)
    assert image.manifest["layers"][0]["mediaType"].endswith("+gzip")
    blob = big.layout / "blobs" / "sha256" / image.layer_digests[0][7:]
    assert sha256_file(blob) == image.layer_digests[0]


def test_ocidir_to_tar(big: Big) -> None:
    out = big.work / "out.tar"
    try:
        rss = peak_rss([*CLI, "process", f"ocidir://{big.layout}:big", f"tar://{out}"])
        assert rss < LIMIT, f"peak RSS {_mib(rss)}"
        with tarfile.open(out) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            (layer,) = manifest[0]["Layers"]
            body = tar.extractfile(layer)
            assert body is not None
            h = hashlib.sha256()
            while chunk := body.read(1 << 20):
                h.update(chunk)
        assert "sha256:" + h.hexdigest() == big.diff_id
    finally:
        out.unlink(missing_ok=True)


def test_tar_to_expanded_dir(big: Big) -> None:
    out = big.work / "expanded"
    try:
        rss = peak_rss([*CLI, "process", f"tar://{big.archive}", f"dir://{out}?expand=true"])
        assert rss < LIMIT, f"peak RSS {_mib(rss)}"
        assert os.path.getsize(out / "rootfs" / BIG_FILE) == SIZE
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_ocidir_to_bundle(big: Big) -> None:
    oci = next(t for t in TRANSPORTS if t.scheme == "oci")
    require_module(oci.sink_factory, "output oci://")
    out = big.work / "bundle"
    try:
        rss = peak_rss([*CLI, "process", f"ocidir://{big.layout}:big", f"oci://{out}"])
        assert rss < LIMIT, f"peak RSS {_mib(rss)}"
        assert os.path.getsize(out / "rootfs" / BIG_FILE) == SIZE
        assert json.loads((out / "config.json").read_text())["process"]["args"] == ["/bin/true"]
    finally:
        shutil.rmtree(out, ignore_errors=True)
