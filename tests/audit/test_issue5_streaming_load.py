"""Issue 5 audit, item 2: ``docker://`` output streams into ``POST /images/load`` without
building the archive in a temporary file first.

A watcher lists ``--temp-dir`` every 5 ms while the CLI loads a docker-save archive with a
32 MiB uncompressed layer into the real podman. Unchanged uncompressed layers must stream
straight through: the temp dir never holds more than a small fraction of the image, and is
empty afterwards. (A gzip layout as source must spool layer by layer, never the archive: the
peak is then below the size of the biggest layer plus slack, far below the image.)
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from lab import images
from lab.daemon import Daemon
from lab.ocilayout import LayoutInfo, build_oci_layout
from lab.tarspec import TarSpec, directory, file
from lab.tempfiles import files_under
from lab.tools import OccystrapRunner
from occystrap.errors import ImageNotFound
from occystrap.transports.daemon.client import DaemonClient

MiB = 1 << 20
PREFIX = f"occy-audit5-{uuid.uuid4().hex[:6]}"


class Watcher:
    """Largest total size of the files under ``root`` seen while running (unnamed spool
    files included, see ``lab.tempfiles``)."""

    def __init__(self, root: Path) -> None:
        self.root, self.peak, self._stop = root, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(files_under(self.root).values()))
            time.sleep(0.005)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[LayoutInfo, LayoutInfo, Path]:
    root = tmp_path_factory.mktemp("audit5-load")
    big = images.big_layer_file(root / "big.tar", 32 * MiB, seed=5, files=2)
    layers: list[list[TarSpec] | Path] = [
        [directory("etc"), file("etc/hostname", "audit\n")],
        big.path,
    ]
    plain = build_oci_layout(root / "plain", layers, compression="none")
    gz = build_oci_layout(root / "gz", layers, compression="gzip")
    archive = images.docker_save_legacy(plain, root / "plain.tar", ["audit/big:v1"])
    return plain, gz, archive


def _load(
    run: OccystrapRunner, daemon: Daemon, source: str, name: str, temp: Path
) -> tuple[int, str]:
    with Watcher(temp) as watcher:
        done = run(
            "-q", "--temp-dir", temp, "process", source, f"docker://{name}?socket={daemon.socket}"
        )
    assert done.returncode == 0, done.stderr.decode()
    assert list(temp.iterdir()) == []
    return watcher.peak, done.stderr.decode()


def test_load_streams_without_an_archive_on_disk(
    podman: Daemon,
    image: tuple[LayoutInfo, LayoutInfo, Path],
    run_occystrap: OccystrapRunner,
    tmp_path: Path,
) -> None:
    plain, gz, archive = image
    temp = tmp_path / "temp"
    temp.mkdir()
    names = [f"{PREFIX}/from-tar:v1", f"{PREFIX}/from-gzip-layout:v1"]
    try:
        peak, _ = _load(run_occystrap, podman, f"tar://{archive}", names[0], temp)
        assert peak < 4 * MiB, f"{peak} bytes spooled for uncompressed layers that could stream"
        peak_gz, _ = _load(run_occystrap, podman, f"ocidir://{gz.path}", names[1], temp)
        assert peak_gz < 34 * MiB + 4 * MiB, f"{peak_gz} bytes spooled: more than one layer"
        assert peak_gz > MiB, "the watcher saw no spool file (a decompressed layer must be)"
        with DaemonClient(str(podman.socket)) as client:
            for name in names:
                assert client.inspect_image(name)["Id"] == plain.config_digest
    finally:
        with DaemonClient(str(podman.socket)) as client:
            for name in names:
                try:
                    client.remove_image(name, force=True)
                except ImageNotFound:
                    pass
