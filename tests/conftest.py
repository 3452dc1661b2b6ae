"""Session fixtures of the lab: real registries, daemons and fixture images (see tests/lab/).

Services start lazily (only when a test asks for them), bind 127.0.0.1 only and are stopped
at session end even when tests fail. Fixture images are built once per session and must be
treated as read-only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from lab import images  # noqa: E402
from lab.daemon import Daemon  # noqa: E402
from lab.dockerd import start_dockerd  # noqa: E402
from lab.ocilayout import LayoutInfo  # noqa: E402
from lab.podman import start_podman  # noqa: E402
from lab.registry import Mode, Registry, start_registry  # noqa: E402
from lab.rss import peak_rss as _peak_rss  # noqa: E402
from lab.tools import OccystrapRunner  # noqa: E402
from lab.tools import run_occystrap as _run_occystrap  # noqa: E402


@pytest.fixture(autouse=True)
def _own_cache_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets its own ``$XDG_CACHE_HOME``: what one test's pushes remember (where
    blobs are, see transports/registry/locations.py) or its downloads keep cannot change
    another test's outcome."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache-home")))


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide scratch directory for lab services and fixture images."""
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="session")
def make_registry(lab_dir: Path) -> Iterator[Callable[[Mode], Registry]]:
    """Factory: ``make_registry(mode)`` starts a fresh registry, stopped at session end."""
    started: list[Registry] = []

    def make(mode: Mode) -> Registry:
        reg = start_registry(mode, lab_dir / f"registry-{mode}-{len(started)}")
        started.append(reg)
        return reg

    yield make
    for reg in started:
        reg.stop()


def _registry(lab_dir: Path, mode: Mode) -> Iterator[Registry]:
    reg = start_registry(mode, lab_dir / f"registry-{mode}")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def registry_plain(lab_dir: Path) -> Iterator[Registry]:
    """Plain HTTP, anonymous push and pull."""
    yield from _registry(lab_dir, "plain")


@pytest.fixture(scope="session")
def registry_auth(lab_dir: Path) -> Iterator[Registry]:
    """Plain HTTP + htpasswd basic auth (testuser/testpass)."""
    yield from _registry(lab_dir, "auth")


@pytest.fixture(scope="session")
def registry_tls(lab_dir: Path) -> Iterator[Registry]:
    """HTTPS with the lab CA (``ca_file``, ``certs_d``), anonymous."""
    yield from _registry(lab_dir, "tls")


@pytest.fixture(scope="session")
def registry_tls_auth(lab_dir: Path) -> Iterator[Registry]:
    """HTTPS + htpasswd basic auth."""
    yield from _registry(lab_dir, "tls-auth")


@pytest.fixture(scope="session")
def registry_token(lab_dir: Path) -> Iterator[Registry]:
    """Plain HTTP + Bearer token auth; anonymous callers may only pull."""
    yield from _registry(lab_dir, "token")


@pytest.fixture(scope="session")
def podman(lab_dir: Path) -> Iterator[Daemon]:
    """``podman system service`` (Docker API 1.41) on a unix socket, private vfs store."""
    daemon = start_podman(lab_dir / "podman")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def dockerd(lab_dir: Path) -> Iterator[Daemon]:
    """dockerd 20.10 on a unix socket, vfs, no bridge/iptables."""
    daemon = start_dockerd(lab_dir / "dockerd")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def busybox_layout(lab_dir: Path) -> LayoutInfo:
    """OCI layout (gzip, tag ``latest``) of a one-layer static busybox image."""
    return images.build_oci_layout(lab_dir / "images" / "busybox", images.busybox_layers())


@pytest.fixture(scope="session")
def edge_layout(lab_dir: Path) -> LayoutInfo:
    """OCI layout (gzip, tag ``latest``) of the three-layer edge-case image (lab.edgecase)."""
    return images.build_oci_layout(lab_dir / "images" / "edge", images.edge_case_layers())


@pytest.fixture(scope="session")
def busybox_archive(lab_dir: Path, busybox_layout: LayoutInfo) -> Path:
    """docker-archive of the busybox image written by skopeo, tagged ``lab/busybox:latest``."""
    out = lab_dir / "images" / "busybox.docker.tar"
    return images.to_docker_archive(busybox_layout, "latest", out, "lab/busybox:latest")


@pytest.fixture(scope="session")
def edge_archive(lab_dir: Path, edge_layout: LayoutInfo) -> Path:
    """docker-archive of the edge-case image written by skopeo, tagged ``lab/edge:latest``."""
    out = lab_dir / "images" / "edge.docker.tar"
    return images.to_docker_archive(edge_layout, "latest", out, "lab/edge:latest")


@pytest.fixture
def run_occystrap() -> OccystrapRunner:
    """``run_occystrap(*args, input=None, env=None)`` -> CompletedProcess[bytes] of the CLI."""
    return _run_occystrap


@pytest.fixture
def peak_rss() -> Callable[..., int]:
    """``peak_rss(cmd, stdin=None, stdout=None, env=None, check=True)`` -> peak RSS in bytes."""
    return _peak_rss


def pytest_report_header() -> str:
    return f"lab: CI={os.environ.get('CI', '')!r} (missing system tools {'fail' if os.environ.get('CI') == 'true' else 'skip'})"
