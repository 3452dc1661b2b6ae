"""registry:// under faults: a fault-injecting HTTP proxy on loopback in front of the real registry.

:class:`FaultProxy` forwards every request to the registry (keeping the ``Host`` header, so the
registry's absolute upload URLs point back at the proxy) and applies :class:`Fault` rules to
matching requests: answer with a status, cut or stall a body after N bytes, flip a byte,
replace headers, or redirect to another host. It logs every request and counts the body bytes
it served per path, which is how the tests see resumes and re-transfers. Each outcome is
asserted: resumed and correct, or a clear one-line error with exit status 1 and no output.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab import images
from lab.ocilayout import LayoutInfo
from lab.registry import Registry
from lab.tools import OccystrapRunner, skopeo

CHUNK = 64 << 10
BIG = 40 << 20  # a layer above the 16 MiB cross-run resume threshold


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the proxy ----------------------------------------------------------------------------------


@dataclass
class Fault:
    """What to do to the requests ``match`` accepts (the first ``times`` of them)."""

    match: Callable[[str, str, Mapping[str, str]], bool]
    times: int = 1
    status: int | None = None  # answer this instead of forwarding
    headers: Mapping[str, str] = field(default_factory=dict)  # set on the (forwarded) answer
    cut_after: int | None = None  # close the connection after this many body bytes
    stall_after: int | None = None  # stop sending after this many body bytes until released
    flip_at: int | None = None  # change the body byte at this offset
    redirect: str | None = None  # 307 to this base URL + the request path
    hits: int = 0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.served: Counter[str] = Counter()
        self.release = threading.Event()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def requests(self, method: str, contains: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and contains in s.path]

    def _fault(self, method: str, path: str, headers: Mapping[str, str]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.hits < fault.times and fault.match(method, path, headers):
                    fault.hits += 1
                    return fault
        return None

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        headers = {k.lower(): v for k, v in h.headers.items()}
        body = _read_body(h)
        with self._lock:
            self.seen.append(Seen(method, path, headers))
        fault = self._fault(method, path, headers)
        if fault is not None and fault.status is not None:
            return _answer(
                h, fault.status, b'{"errors":[{"code":"UNAVAILABLE"}]}', dict(fault.headers)
            )
        if fault is not None and fault.redirect is not None:
            return _answer(h, 307, b"", {"Location": fault.redirect + path})
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            sent = {
                k: v
                for k, v in h.headers.items()
                if k.lower() not in ("connection", "transfer-encoding", "content-length")
            }
            conn.request(
                method,
                path,
                body=body if body or method in ("POST", "PUT", "PATCH") else None,
                headers=sent,
            )
            resp = conn.getresponse()
            out = {
                k: v
                for k, v in resp.getheaders()
                if k.lower() not in ("connection", "transfer-encoding", "keep-alive")
            }
            if fault is not None:
                out.update(fault.headers)
            length = resp.getheader("content-length")
            if method == "HEAD" or length is None:
                data = resp.read()
                out["Content-Length"] = out.get("Content-Length", str(len(data)))
                h.send_response(resp.status)
                for k, v in out.items():
                    h.send_header(k, v)
                h.end_headers()
                if method != "HEAD":
                    h.wfile.write(data)
                return None
            h.send_response(resp.status)
            for k, v in out.items():
                h.send_header(k, v)
            h.end_headers()
            self._relay(h, resp, path, fault)
        finally:
            conn.close()
        return None

    def _relay(
        self,
        h: http.server.BaseHTTPRequestHandler,
        resp: http.client.HTTPResponse,
        path: str,
        fault: Fault | None,
    ) -> None:
        done = 0
        while chunk := resp.read(CHUNK):
            if (
                fault is not None
                and fault.flip_at is not None
                and done <= fault.flip_at < done + len(chunk)
            ):
                i = fault.flip_at - done
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
            for limit, action in (
                (fault and fault.cut_after, "cut"),
                (fault and fault.stall_after, "stall"),
            ):
                if limit is not None and done + len(chunk) >= limit:
                    head = chunk[: limit - done]
                    h.wfile.write(head)
                    h.wfile.flush()
                    with self._lock:
                        self.served[path] += len(head)
                    if action == "stall":
                        self.release.wait(120)
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
            h.wfile.write(chunk)
            with self._lock:
                self.served[path] += len(chunk)
            done += len(chunk)


def _read_body(h: http.server.BaseHTTPRequestHandler) -> bytes:
    if h.headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                h.rfile.readline()
                return b"".join(parts)
            parts.append(h.rfile.read(size))
            h.rfile.readline()
    length = int(h.headers.get("content-length") or 0)
    return h.rfile.read(length) if length else b""


def _answer(
    h: http.server.BaseHTTPRequestHandler, status: int, body: bytes, headers: Mapping[str, str]
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    for k, v in headers.items():
        h.send_header(k, v)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def blob_get(
    digest: str, ranged: bool | None = None
) -> Callable[[str, str, Mapping[str, str]], bool]:
    def match(method: str, path: str, headers: Mapping[str, str]) -> bool:
        if method != "GET" or not path.endswith(f"/blobs/{digest}"):
            return False
        return ranged is None or ("range" in headers) == ranged

    return match


def manifest_get(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return method == "GET" and "/manifests/" in path


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
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
def occ(
    run_occystrap: OccystrapRunner, env: dict[str, str]
) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    def call(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
        done = run_occystrap(*args, env=env)
        if ok and done.returncode != 0:
            raise AssertionError(f"occystrap failed ({done.returncode}):\n{done.stderr.decode()}")
        return done

    return call


@pytest.fixture
def proxy(registry_plain: Registry) -> Iterator[FaultProxy]:
    p = FaultProxy(registry_plain.host)
    yield p
    p.close()


@pytest.fixture(scope="session")
def busybox_repo(registry_plain: Registry, busybox_layout: LayoutInfo) -> str:
    skopeo(
        "copy",
        *registry_plain.skopeo_args("dest"),
        busybox_layout.ref,
        registry_plain.ref("faults/busybox", "v1"),
    )
    return "faults/busybox"


@dataclass(frozen=True)
class BigImage:
    repo: str
    manifest_digest: str
    layer: str
    size: int


@pytest.fixture(scope="session")
def big_repo(registry_plain: Registry, lab_dir: Path) -> BigImage:
    """An image with one ~40 MiB layer of random bytes (skopeo gzips it on the way in)."""
    big = images.big_layer_file(lab_dir / "faults" / "big.tar", BIG, seed=7)
    layout = images.build_oci_layout(
        lab_dir / "faults" / "big-layout", [big.path], compression="none"
    )
    skopeo(
        "copy",
        *registry_plain.skopeo_args("dest"),
        layout.ref,
        registry_plain.ref("faults/big", "v1"),
    )
    raw = skopeo(
        "inspect",
        "--raw",
        *registry_plain.skopeo_args("plain"),
        registry_plain.ref("faults/big", "v1"),
    ).stdout
    layer = json.loads(raw)["layers"][0]
    return BigImage("faults/big", sha256(raw.encode()), layer["digest"], layer["size"])


def one_line_error(done: subprocess.CompletedProcess[bytes]) -> str:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("occystrap: error: "), lines
    return lines[0]


def layout_digest(path: Path) -> str:
    index = json.loads((path / "index.json").read_text())
    digest: str = index["manifests"][0]["digest"]
    return digest


# -- faults while pulling ---------------------------------------------------------------------


def test_connection_dropped_mid_blob_is_resumed(
    occ: Any, proxy: FaultProxy, busybox_repo: str, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    layer = busybox_layout.layer_digests[0]
    size = busybox_layout.layer_sizes[0]
    proxy.faults.append(Fault(blob_get(layer, ranged=False), cut_after=size // 3))
    occ(
        "--insecure",
        "process",
        f"registry://{proxy.host}/{busybox_repo}:v1",
        f"ocidir://{tmp_path / 'out'}:v1",
    )
    assert layout_digest(tmp_path / "out") == busybox_layout.manifest_digest
    resumed = [
        s.headers["range"] for s in proxy.requests("GET", f"/blobs/{layer}") if "range" in s.headers
    ]
    assert len(resumed) == 1, proxy.seen
    start = int(resumed[0].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= size // 3
    assert (
        proxy.served[f"/v2/{busybox_repo}/blobs/{layer}"] == size // 3 + size - start
    )  # nothing fetched twice
    skopeo("copy", f"oci:{tmp_path / 'out'}:v1", f"oci:{tmp_path / 'judge'}:x")


def test_429_honours_retry_after(
    occ: Any, proxy: FaultProxy, busybox_repo: str, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    proxy.faults.append(Fault(manifest_get, status=429, headers={"Retry-After": "2"}))
    started = time.monotonic()
    occ(
        "--insecure",
        "process",
        f"registry://{proxy.host}/{busybox_repo}:v1",
        f"ocidir://{tmp_path / 'out'}:v1",
    )
    assert time.monotonic() - started >= 2.0
    assert len(proxy.requests("GET", "/manifests/")) == 2
    assert layout_digest(tmp_path / "out") == busybox_layout.manifest_digest


def test_server_errors_are_retried_then_reported(
    occ: Any, proxy: FaultProxy, busybox_repo: str, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    layer = busybox_layout.layer_digests[0]
    proxy.faults.append(Fault(blob_get(layer), times=2, status=500))
    occ(
        "--insecure",
        "process",
        f"registry://{proxy.host}/{busybox_repo}:v1",
        f"ocidir://{tmp_path / 'ok'}:v1",
    )
    assert len(proxy.requests("GET", f"/blobs/{layer}")) == 3
    assert layout_digest(tmp_path / "ok") == busybox_layout.manifest_digest
    proxy.faults.append(Fault(blob_get(layer), times=10, status=503))
    done = occ(
        "--insecure",
        "--retries",
        "2",
        "process",
        f"registry://{proxy.host}/{busybox_repo}:v1",
        f"tar://{tmp_path / 'x.tar'}",
        ok=False,
    )
    line = one_line_error(done)
    assert "503" in line and layer in line, line
    assert not (tmp_path / "x.tar").exists()


def test_redirect_to_another_host_does_not_carry_authorization(
    occ: Any, registry_auth: Registry, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    reg = registry_auth
    skopeo("copy", *reg.skopeo_args("dest"), busybox_layout.ref, reg.ref("faults/redirected", "v1"))
    storage_seen: list[dict[str, str]] = []

    class Storage(http.server.BaseHTTPRequestHandler):
        """Plays the blob store a registry redirects to (it fetches with its own credentials)."""

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            storage_seen.append({k.lower(): v for k, v in self.headers.items()})
            conn = http.client.HTTPConnection(reg.host, timeout=30)
            auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
            conn.request("GET", self.path, headers={"Authorization": f"Basic {auth}"})
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    storage = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    threading.Thread(target=storage.serve_forever, daemon=True).start()
    proxy = FaultProxy(reg.host)
    try:
        layer = busybox_layout.layer_digests[0]
        proxy.faults.append(
            Fault(blob_get(layer), redirect=f"http://127.0.0.1:{storage.server_address[1]}")
        )
        occ("--insecure", "--username", reg.username, "--password", reg.password,
            "process", f"registry://{proxy.host}/faults/redirected:v1", f"ocidir://{tmp_path / 'out'}:v1")  # fmt: skip
    finally:
        proxy.close()
        storage.shutdown()
        storage.server_close()
    assert layout_digest(tmp_path / "out") == busybox_layout.manifest_digest
    assert [
        s.headers.get("authorization", "")[:6] for s in proxy.requests("GET", f"/blobs/{layer}")
    ] == ["Basic "]
    assert len(storage_seen) == 1 and "authorization" not in storage_seen[0], storage_seen


def test_wrong_docker_content_digest_is_refused(
    occ: Any, proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    wrong = sha256(b"something else")
    proxy.faults.append(Fault(manifest_get, headers={"Docker-Content-Digest": wrong}))
    done = occ(
        "--insecure",
        "process",
        f"registry://{proxy.host}/{busybox_repo}:v1",
        f"tar://{tmp_path / 'x.tar'}",
        ok=False,
    )
    line = one_line_error(done)
    assert "digest mismatch" in line and wrong in line, line
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.parametrize("dest", ["tar", "ocidir", "registry"])
def test_corrupted_blob_is_a_digest_mismatch_naming_it(
    occ: Any,
    proxy: FaultProxy,
    registry_plain: Registry,
    busybox_repo: str,
    busybox_layout: LayoutInfo,
    tmp_path: Path,
    dest: str,
) -> None:
    layer = busybox_layout.layer_digests[0]
    proxy.faults.append(Fault(blob_get(layer), times=100, flip_at=1000))
    out = {
        "tar": f"tar://{tmp_path / 'x.tar'}",
        "ocidir": f"ocidir://{tmp_path / 'layout'}:v1",
        "registry": f"registry://{registry_plain.host}/faults/corrupted:v1",
    }[dest]
    done = occ("--insecure", "process", f"registry://{proxy.host}/{busybox_repo}:v1", out, ok=False)
    line = one_line_error(done)
    assert "digest mismatch" in line and layer in line, line
    assert not (tmp_path / "x.tar").exists()
    assert not (tmp_path / "layout" / "index.json").exists()
    status = skopeo(
        "inspect",
        "--raw",
        *registry_plain.skopeo_args("plain"),
        registry_plain.ref("faults/corrupted", "v1"),
        check=False,
    )
    assert status.returncode != 0  # nothing was tagged


# -- faults while pushing ---------------------------------------------------------------------


def test_push_survives_failed_upload_requests(
    occ: Any,
    proxy: FaultProxy,
    registry_plain: Registry,
    busybox_layout: LayoutInfo,
    tmp_path: Path,
) -> None:
    # small blobs go up in one PUT each (a PATCH fails in the next test)
    proxy.faults.append(Fault(lambda m, p, h: m == "PUT" and "/blobs/uploads/" in p, status=503))
    proxy.faults.append(Fault(lambda m, p, h: m == "PUT" and "/manifests/" in p, status=502))
    occ(
        "--insecure",
        "process",
        f"ocidir://{busybox_layout.path}:latest",
        f"registry://{proxy.host}/faults/pushed:v1",
    )
    raw = skopeo(
        "inspect",
        "--raw",
        *registry_plain.skopeo_args("plain"),
        registry_plain.ref("faults/pushed", "v1"),
    ).stdout
    assert sha256(raw.encode()) == busybox_layout.manifest_digest
    assert all(f.hits == 1 for f in proxy.faults)
    skopeo(
        "copy",
        *registry_plain.skopeo_args("src"),
        registry_plain.ref("faults/pushed", "v1"),
        f"oci:{tmp_path / 'judge'}:x",
    )


def test_copy_to_another_registry_re_reads_the_source_after_a_failed_patch(
    occ: Any, proxy: FaultProxy, registry_plain: Registry, big_repo: BigImage
) -> None:
    """registry → another registry streams each layer from the download into the PATCHes.
    When one fails, the registry says how much it kept; the bytes to send again are read again
    from the source (a second GET), and the first download goes on where it was."""
    source = FaultProxy(registry_plain.host)  # another host name: no cross-repository mount
    try:
        proxy.faults.append(Fault(lambda m, p, h: m == "PATCH", status=500))
        occ(
            "--insecure",
            "process",
            f"registry://{source.host}/{big_repo.repo}:v1",
            f"registry://{proxy.host}/faults/big-copy:v1",
        )
        layer_path = f"/v2/{big_repo.repo}/blobs/{big_repo.layer}"
        gets = source.requests("GET", f"/blobs/{big_repo.layer}")
        served = source.served[layer_path]
    finally:
        source.close()
    raw = skopeo(
        "inspect",
        "--raw",
        *registry_plain.skopeo_args("plain"),
        registry_plain.ref("faults/big-copy", "v1"),
    ).stdout
    assert sha256(raw.encode()) == big_repo.manifest_digest
    assert proxy.faults[0].hits == 1
    ranges = [
        s.headers["content-range"]
        for s in proxy.requests("PATCH", "/faults/big-copy/blobs/uploads/")
    ]
    assert ranges[0].startswith("0-") and ranges[1] == ranges[0], ranges  # sent again
    first_chunk = int(ranges[0].split("-")[1]) + 1
    assert len(gets) == 2, gets  # the download, and a fresh copy for the re-send
    assert big_repo.size + first_chunk <= served < 2 * big_repo.size


def test_failed_push_rerun_sends_only_missing_blobs(
    occ: Any, proxy: FaultProxy, registry_plain: Registry, edge_archive: Path, tmp_path: Path
) -> None:
    """A push that failed after some layers were uploaded: the rerun re-compresses (same
    digests, deterministic gzip) and uploads only what is missing."""
    proxy.faults.append(
        Fault(lambda m, p, h: m == "PUT" and "/manifests/" in p, times=100, status=500)
    )
    done = occ(
        "--insecure",
        "--retries",
        "0",
        "process",
        f"tar://{edge_archive}",
        f"registry://{proxy.host}/faults/edge:v1",
        ok=False,
    )
    one_line_error(done)
    uploaded = {s.path.split("digest=")[1] for s in proxy.requests("PUT", "/blobs/uploads/")}
    assert len(uploaded) >= 3
    proxy.faults.clear()
    proxy.seen.clear()
    occ("--insecure", "process", f"tar://{edge_archive}", f"registry://{proxy.host}/faults/edge:v1")
    assert not proxy.requests("PATCH", "/blobs/uploads/") and not proxy.requests(
        "PUT", "/blobs/uploads/"
    )
    skopeo(
        "copy",
        *registry_plain.skopeo_args("src"),
        registry_plain.ref("faults/edge", "v1"),
        f"oci:{tmp_path / 'judge'}:x",
    )


# -- killed and run again ---------------------------------------------------------------------


def test_sigkill_mid_layer_then_rerun_fetches_only_the_rest(
    proxy: FaultProxy, big_repo: BigImage, env: dict[str, str], tmp_path: Path
) -> None:
    repo, layer, size = big_repo.repo, big_repo.layer, big_repo.size
    assert size > BIG * 0.9
    blob_path = f"/v2/{repo}/blobs/{layer}"
    partial = (
        Path(env["XDG_CACHE_HOME"])
        / "occystrap"
        / "partial"
        / f"sha256-{layer.split(':')[1]}.partial"
    )
    proxy.faults.append(Fault(blob_get(layer, ranged=False), stall_after=size // 2))
    cmd = [
        sys.executable,
        "-m",
        "occystrap",
        "--insecure",
        "process",
        f"registry://{proxy.host}/{repo}:v1",
        f"ocidir://{tmp_path / 'out'}:v1",
    ]
    first = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        kept = _wait_for_stable_size(partial, minimum=size // 2 - (8 << 20), timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    assert partial.stat().st_size == kept and kept <= size // 2
    served_first = proxy.served[blob_path]
    proxy.release.set()
    proxy.faults.clear()
    proxy.served.clear()
    proxy.seen.clear()
    second = subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, timeout=120, check=False
    )
    assert second.returncode == 0, second.stderr.decode()
    assert proxy.served[blob_path] == size - kept  # only the remainder crossed the wire
    assert [s.headers.get("range") for s in proxy.requests("GET", f"/blobs/{layer}")] == [
        f"bytes={kept}-"
    ]
    assert served_first + proxy.served[blob_path] < size + (8 << 20)
    assert not partial.exists()  # used up
    assert layout_digest(tmp_path / "out") == big_repo.manifest_digest
    blob = tmp_path / "out" / "blobs" / "sha256" / layer.split(":")[1]
    h = hashlib.sha256()
    with open(blob, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == layer


def _wait_for_stable_size(path: Path, minimum: int, timeout: float) -> int:
    """Wait until ``path`` holds at least ``minimum`` bytes and stops growing; its size."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else -1
        if size != last:
            last, since = size, time.monotonic()
        elif size >= minimum and time.monotonic() - since > 1.0:
            return size
        time.sleep(0.05)
    raise AssertionError(f"{path} reached {last} bytes, expected a stable size >= {minimum}")
