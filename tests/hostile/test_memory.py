"""Peak memory stays under 150 MB for jobs on a 1.5 GB image (issue 7, point 5).

The image is an OCI layout of four 384 MiB incompressible layers (stored uncompressed) and
the same image as a legacy docker-save archive, built once by the lab's streaming builders. Each job runs through the CLI with the default
parallelism (four layers at once); its peak RSS is measured in a small wrapper process
(``lab.rss``), and its output is removed before the next job so the disk holds at most
two copies of the image.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.dockersave import docker_save_legacy
from lab.images import big_layer_file, build_oci_layout

MiB = 1 << 20
LAYER = 384 * MiB
LIMIT = 150 * 1000 * 1000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(OCI layout, docker-save archive) of the 1.5 GB image."""
    root = tmp_path_factory.mktemp("big")
    tars = []
    for i in range(4):
        tars.append(big_layer_file(root / f"layer{i}.tar", LAYER, seed=100 + i, files=3).path)
    layout = build_oci_layout(root / "layout", tars, compression="none")
    for path in tars:
        path.unlink()
    assert sum(layout.layer_sizes) > 1.5e9
    archive = docker_save_legacy(layout, root / "image.tar", ["lab/big:latest"])
    return layout.path, archive


LAYOUT = "ocidir://{layout}:latest"
ARCHIVE = "tar://{archive}"
JOBS = {
    "ocidir-to-ocidir-gzip": [LAYOUT, "ocidir://{out}:v"],
    "ocidir-filtered-to-ocidir": [
        LAYOUT,
        "ocidir://{out}:v",
        "-f",
        "exclude:pattern=big/random-1.bin",
    ],
    "docker-save-to-tar": [ARCHIVE, "tar://{out}.tar"],
    "docker-save-to-bundle": [ARCHIVE, "oci://{out}"],
}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_peak_memory_on_a_1_5_gb_image(
    big_image: tuple[Path, Path], tmp_path: Path, peak_rss: Callable[..., int], job: str
) -> None:
    out = tmp_path / "out"
    layout, archive = big_image
    args = [a.format(layout=layout, archive=archive, out=out) for a in JOBS[job]]
    argv = [sys.executable, "-m", "occystrap", "-q", "--temp-dir", str(tmp_path), "process", *args]
    try:
        peak = peak_rss(argv, timeout=600)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        Path(f"{out}.tar").unlink(missing_ok=True)
    print(f"{job}: peak RSS {peak / 1e6:.1f} MB")
    assert peak < LIMIT, f"{job}: peak RSS {peak / 1e6:.1f} MB over {LIMIT / 1e6:.0f} MB"
