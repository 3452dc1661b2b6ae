"""Issue 7 audit: a *real* daemon that dies mid-stream, not only the fake Engine API.

tests/reliability/test_fault_injection.py cuts exports and loads of a fake Engine API. Here a
small unix-socket proxy sits in front of the real ``podman system service`` (the lab's, as in
tests/transports/test_daemon.py) and cuts, on loopback, either the daemon's answer to
``GET /images/{name}/get`` after some bytes, or our upload to ``POST /images/load``. The CLI
must end with one ``occystrap: error:`` line and exit 1, leave no output and no temporary
file, and the daemon must not hold a half-loaded image under the name we gave.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from lab.daemon import Daemon
from lab.loopback import accept_each
from lab.ocilayout import LayoutInfo
from lab.tools import OccystrapRunner
from occystrap.errors import ImageNotFound
from occystrap.transports.daemon.client import DaemonClient

PREFIX = f"occy-audit7-{uuid.uuid4().hex[:6]}"


class CuttingProxy:
    """Unix socket ``path`` -> ``upstream``. After ``cut_export`` bytes of an answer to a
    ``/get`` request, or ``cut_load`` bytes of a ``/images/load`` request, both sides of that
    connection are closed, as if the daemon had died."""

    def __init__(
        self, path: Path, upstream: Path, cut_export: int | None = None, cut_load: int | None = None
    ) -> None:
        self.path, self.upstream = path, upstream
        self.cut_export, self.cut_load = cut_export, cut_load
        self.cuts = 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(16)
        accept_each(self.server, self._forward)

    def _forward(self, client: socket.socket) -> None:
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect(str(self.upstream))
        state = {"export": False, "load": False, "down": 0, "up": 0, "dead": False}
        threading.Thread(target=self._pump_up, args=(client, up, state), daemon=True).start()
        threading.Thread(target=self._pump_down, args=(up, client, state), daemon=True).start()

    def _kill(self, a: socket.socket, b: socket.socket, state: dict[str, object]) -> None:
        if not state["dead"]:
            state["dead"] = True
            self.cuts += 1
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _pump_up(self, client: socket.socket, up: socket.socket, state: dict[str, object]) -> None:
        try:
            while data := client.recv(65536):
                head = data[:512]
                if b"GET " in head and b"/get" in head.split(b"\r\n", 1)[0]:
                    state["export"], state["down"] = True, 0
                if b"POST " in head and b"/images/load" in head.split(b"\r\n", 1)[0]:
                    state["load"], state["up"] = True, 0
                if state["load"] and self.cut_load is not None:
                    sent = int(state["up"])  # type: ignore[call-overload]
                    if sent + len(data) > self.cut_load:
                        up.sendall(data[: max(0, self.cut_load - sent)])
                        self._kill(client, up, state)
                        return
                    state["up"] = sent + len(data)
                up.sendall(data)
        except OSError:
            pass

    def _pump_down(
        self, up: socket.socket, client: socket.socket, state: dict[str, object]
    ) -> None:
        try:
            while data := up.recv(65536):
                if state["export"] and self.cut_export is not None:
                    sent = int(state["down"])  # type: ignore[call-overload]
                    if sent + len(data) > self.cut_export:
                        client.sendall(data[: max(0, self.cut_export - sent)])
                        self._kill(client, up, state)
                        return
                    state["down"] = sent + len(data)
                client.sendall(data)
        except OSError:
            pass
        finally:
            try:
                client.close()
            except OSError:
                pass

    def close(self) -> None:
        self.server.close()


def one_line_error(done: subprocess.CompletedProcess[bytes]) -> str:
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("occystrap: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    return err.strip()


@pytest.fixture(scope="module")
def loaded(podman: Daemon, busybox_archive: Path, busybox_layout: LayoutInfo) -> str:
    tag = f"{PREFIX}/bb:v1"
    with DaemonClient(str(podman.socket)) as client, open(busybox_archive, "rb") as f:
        client.load_image(f)
        client.tag_image(busybox_layout.config_digest, f"{PREFIX}/bb", "v1")
    return tag


@pytest.mark.parametrize("dest", ["tar", "ocidir", "dir"])
def test_real_podman_export_cut_mid_layer(
    podman: Daemon, loaded: str, run_occystrap: OccystrapRunner, tmp_path: Path, dest: str
) -> None:
    proxy = CuttingProxy(tmp_path / "cut.sock", podman.socket, cut_export=300 << 10)
    temp = tmp_path / "temp"
    temp.mkdir()
    out = tmp_path / "out"
    uri = {"tar": f"tar://{out}.tar", "ocidir": f"ocidir://{out}:v1", "dir": f"dir://{out}"}[dest]
    try:
        done = run_occystrap(
            "--temp-dir", temp, "process", f"docker://{loaded}?socket={proxy.path}", uri
        )
    finally:
        proxy.close()
    line = one_line_error(done)
    assert proxy.cuts >= 1
    assert "broke off" in line or "daemon" in line or "truncated" in line, line
    assert list(temp.iterdir()) == []
    assert not Path(f"{out}.tar").exists()
    if out.exists():  # a layout or store directory may exist, but holds no image
        assert not (out / "index.json").exists() or b'"manifests":[]' in (
            out / "index.json"
        ).read_bytes().replace(b" ", b"")
        assert not (out / "catalog.json").exists() and not (out / "manifest.json").exists()
    assert [p for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_real_podman_load_cut_mid_upload(
    podman: Daemon, busybox_archive: Path, run_occystrap: OccystrapRunner, tmp_path: Path
) -> None:
    name = f"{PREFIX}/cut-load:v1"
    proxy = CuttingProxy(tmp_path / "cut.sock", podman.socket, cut_load=256 << 10)
    try:
        done = run_occystrap(
            "process", f"tar://{busybox_archive}", f"docker://{name}?socket={proxy.path}"
        )
    finally:
        proxy.close()
    line = one_line_error(done)
    assert proxy.cuts >= 1
    assert "daemon" in line, line
    with DaemonClient(str(podman.socket)) as client:
        with pytest.raises(ImageNotFound):
            client.inspect_image(name)
        client.list_images()  # the daemon survived
    assert os.path.exists(podman.socket)
