"""RegistryClient against real loopback HTTP servers (fault-injecting) and the real docker-registry.

The fake registry below is a small Distribution-API server on ``ThreadingHTTPServer`` with
knobs for the failures we must survive: 5xx/429 bursts, connections dropped mid-body, Range
ignored, corrupted blobs, lying ``Docker-Content-Digest`` headers, 416 on PATCH, redirects to
another port. The last section runs the same client against Debian's ``docker-registry``.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import json
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from occystrap.errors import (
    AuthenticationError,
    BlobNotFound,
    DigestMismatch,
    ImageNotFound,
    InvalidOption,
    InvalidReference,
    LimitExceeded,
    MalformedInput,
    RegistryError,
    SizeMismatch,
    TransportError,
)
from occystrap.image import Layer
from occystrap.model.descriptor import Descriptor
from occystrap.model.digest import Digest
from occystrap.model.media_types import MediaType
from occystrap.transports.base import LayerWrite, RunContext
from occystrap.transports.registry import (
    Credentials,
    RegistryClient,
    RegistryReference,
    RetryPolicy,
    TLSConfig,
    body,
)
from occystrap.transports.registry import parse as parse_ref
from occystrap.transports.registry.retry import retry_after
from occystrap.transports.registry.sink import RegistrySink

try:
    from lab.registry import start_registry
except ImportError:  # tests/ is not on sys.path when no conftest puts it there
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lab.registry import start_registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
FAST = RetryPolicy(attempts=4, backoff_base=0.01, backoff_max=0.05)


# ---- a loopback HTTP server that hands every request to an app --------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _any(self) -> None:
        self.server.app.handle(self)  # type: ignore[attr-defined]

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server:
    def __init__(self, app: Any) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = app  # type: ignore[attr-defined]
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"http://{self.host}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def read_body(h: http.server.BaseHTTPRequestHandler, limit: int | None = None) -> bytes:
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                h.rfile.readline()
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()
    length = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(length if limit is None else min(limit, length))


def send(
    h: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    length: int | None = None,
) -> None:
    h.send_response(status)
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.send_header("Content-Length", str(len(body) if length is None else length))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Fault:
    method: str
    pattern: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1


class FakeRegistry:
    """Just enough of the Distribution API, with fault knobs."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.tags: dict[str, list[str]] = {}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.basic: tuple[str, str] | None = None
        self.faults: list[Fault] = []
        self.drop_blob_at: int | None = None
        self.drops = 1
        self.stall_blob_at: int | None = None
        self.ignore_range = False
        self.redirect_blobs_to: str | None = None
        self.corrupt = False
        self.chunk_min: int | None = None
        self.drop_patch_at: int | None = None
        self.manifest_digest: str | None = None
        self.content_type: str | None = None
        self.page = 0
        self.mountable = True
        self.gzip_manifests = False
        self.on_patch: Callable[[], None] | None = None  # called as a PATCH body starts

    # -- plumbing

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        body = b"" if method == "PATCH" else read_body(h)
        if (
            "Content-Length" in h.headers
            and method != "PATCH"
            and len(body) != int(h.headers["Content-Length"])
        ):
            h.close_connection = True  # the client gave up mid-body, as a real server sees it
            return
        with self.lock:
            self.seen.append(Seen(method, path, {k.lower(): v for k, v in h.headers.items()}, body))
            fault = next(
                (f for f in self.faults if f.method == method and re.search(f.pattern, path)), None
            )
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
        if fault is not None:
            if method == "PATCH":
                read_body(h)
            send(
                h,
                fault.status,
                error_body("TOOMANYREQUESTS" if fault.status == 429 else "UNKNOWN", "x"),
                fault.headers,
            )
            return
        if self.basic is not None:
            expected = (
                "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            )
            if h.headers.get("Authorization") != expected:
                if method == "PATCH":
                    read_body(h)
                send(
                    h,
                    401,
                    error_body("UNAUTHORIZED", "authentication required"),
                    {"WWW-Authenticate": 'Basic realm="fake"'},
                )
                return
        url = urlsplit(path)
        query = parse_qs(url.query)
        for pattern, fn in self.routes():
            match = re.fullmatch(pattern, url.path)
            if match and method in fn.__name__.upper().split("_", 1)[1].split("_"):
                fn(h, query, body, **match.groupdict())
                return
        send(h, 404, b"404 page not found\n")

    def routes(self) -> list[tuple[str, Callable[..., None]]]:
        name = r"(?P<name>[a-z0-9/._-]+?)"
        return [
            (r"/v2/", self.r_get),
            (rf"/v2/{name}/manifests/(?P<ref>[^/]+)", self.r_get_head_put),
            (rf"/v2/{name}/blobs/uploads/", self.r_post),
            (rf"/v2/{name}/blobs/uploads/(?P<uid>[0-9a-f-]+)", self.r_patch_put_get_delete),
            (rf"/v2/{name}/blobs/(?P<digest>sha256:[0-9a-f]{{64}})", self.r_get_head),
            (rf"/v2/{name}/tags/list", self.r_get_tags),
        ]

    # -- routes (the name after r_ lists the methods)

    def r_get(self, h: Any, query: Any, body: bytes) -> None:
        send(h, 200, b"{}", {"Docker-Distribution-Api-Version": "registry/2.0"})

    def r_get_head_put(self, h: Any, query: Any, body: bytes, name: str, ref: str) -> None:
        if h.command == "PUT":
            digest = sha(body)
            media_type = h.headers.get("Content-Type", "")
            self.manifests[(name, ref)] = self.manifests[(name, digest)] = (body, media_type)
            send(
                h,
                201,
                b"",
                {"Docker-Content-Digest": digest, "Location": f"/v2/{name}/manifests/{digest}"},
            )
            return
        found = self.manifests.get((name, ref))
        if found is None:
            send(h, 404, error_body("MANIFEST_UNKNOWN", "manifest unknown"))
            return
        raw, media_type = found
        headers = {
            "Content-Type": self.content_type or media_type,
            "Docker-Content-Digest": self.manifest_digest or sha(raw),
        }
        if self.gzip_manifests:
            headers["Content-Encoding"] = "gzip"
            raw = gzip.compress(raw)
        send(h, 200, raw, headers)

    def r_get_head(self, h: Any, query: Any, body: bytes, name: str, digest: str) -> None:
        data = self.blobs.get(digest)
        if data is None:
            send(h, 404, error_body("BLOB_UNKNOWN", "blob unknown to registry"))
            return
        if self.redirect_blobs_to and h.command == "GET":
            target = self.redirect_blobs_to
            where = (
                target.format(digest=digest)
                if "{digest}" in target
                else f"{target}/storage/{digest}"
            )
            send(h, 307, b"", {"Location": where})
            return
        if self.corrupt:
            data = b"X" + data[1:]
        serve_blob(h, data, self)

    def r_get_tags(self, h: Any, query: Any, body: bytes, name: str) -> None:
        tags = sorted(self.tags.get(name, []))
        n = int(query.get("n", [self.page or 0])[0]) or len(tags)
        last = query.get("last", [None])[0]
        start = tags.index(last) + 1 if last in tags else 0
        page = tags[start : start + n]
        headers = {"Content-Type": "application/json"}
        if start + n < len(tags):
            headers["Link"] = f'</v2/{name}/tags/list?last={page[-1]}&n={n}>; rel="next"'
        send(h, 200, json.dumps({"name": name, "tags": page}).encode(), headers)

    def r_post(self, h: Any, query: Any, body: bytes, name: str) -> None:
        mount, source = query.get("mount", [None])[0], query.get("from", [None])[0]
        if mount and source and self.mountable and mount in self.blobs:
            send(
                h,
                201,
                b"",
                {"Docker-Content-Digest": mount, "Location": f"/v2/{name}/blobs/{mount}"},
            )
            return
        uid = str(uuid.uuid4())
        self.uploads[uid] = bytearray()
        headers = {"Location": f"/v2/{name}/blobs/uploads/{uid}?_state=s0", "Range": "0-0"}
        if self.chunk_min:
            headers["OCI-Chunk-Min-Length"] = str(self.chunk_min)
        send(h, 202, b"", headers)

    def r_patch_put_get_delete(self, h: Any, query: Any, body: bytes, name: str, uid: str) -> None:
        buf = self.uploads.get(uid)
        if buf is None:
            if h.command == "PATCH":
                read_body(h)
            send(h, 404, error_body("BLOB_UPLOAD_UNKNOWN", "upload unknown"))
            return
        if "_state" not in query:
            if h.command == "PATCH":
                read_body(h)
            send(h, 400, error_body("BLOB_UPLOAD_INVALID", "lost the _state query"))
            return
        location = f"/v2/{name}/blobs/uploads/{uid}?_state=s{len(buf)}"
        if h.command == "DELETE":
            del self.uploads[uid]
            send(h, 204)
        elif h.command == "GET":
            send(h, 204, b"", {"Location": location, "Range": f"0-{max(0, len(buf) - 1)}"})
        elif h.command == "PATCH":
            if self.on_patch is not None:
                self.on_patch()
            start = int(h.headers["Content-Range"].split("-")[0])
            if start != len(buf):
                read_body(h)
                send(h, 416, error_body("BLOB_UPLOAD_INVALID", "out of order"))
                return
            if self.drop_patch_at is not None:
                buf += read_body(h, self.drop_patch_at)
                self.drop_patch_at = None
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            buf += read_body(h)
            location = f"/v2/{name}/blobs/uploads/{uid}?_state=s{len(buf)}"
            send(h, 202, b"", {"Location": location, "Range": f"0-{len(buf) - 1}"})
        else:  # PUT
            buf += body
            digest = query["digest"][0]
            if sha(bytes(buf)) != digest:
                send(
                    h,
                    400,
                    error_body("DIGEST_INVALID", "provided digest did not match uploaded content"),
                )
                return
            self.blobs[digest] = bytes(buf)
            del self.uploads[uid]
            send(
                h,
                201,
                b"",
                {"Docker-Content-Digest": digest, "Location": f"/v2/{name}/blobs/{digest}"},
            )

    def requests(self, method: str, pattern: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method == method and re.search(pattern, s.path)]


def serve_blob(h: Any, data: bytes, knobs: Any) -> None:
    """Serve ``data`` honouring Range, with the registry's drop/stall knobs."""
    start = 0
    match = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))
    if match and not knobs.ignore_range:
        start = int(match.group(1))
        h.send_response(206)
        h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
        h.send_response(200)
    h.send_header("Content-Length", str(len(data) - start))
    h.send_header("Content-Type", "application/octet-stream")
    h.send_header("Docker-Content-Digest", sha(data))
    h.end_headers()
    if h.command == "HEAD":
        return
    part = data[start:]
    cut = None
    if knobs.drop_blob_at is not None and knobs.drops > 0 and start < knobs.drop_blob_at:
        cut, how = knobs.drop_blob_at - start, "drop"
    elif knobs.stall_blob_at is not None and start < knobs.stall_blob_at:
        cut, how = knobs.stall_blob_at - start, "stall"
    if cut is None:
        h.wfile.write(part)
        return
    h.wfile.write(part[:cut])
    h.wfile.flush()
    if how == "stall":
        knobs.stall_blob_at = None
        time.sleep(1.5)
    else:
        knobs.drops -= 1
    h.close_connection = True
    h.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def fake() -> Iterator[tuple[FakeRegistry, Server]]:
    app = FakeRegistry()
    server = Server(app)
    try:
        yield app, server
    finally:
        server.close()


def client_for(server: Server, **kw: Any) -> RegistryClient:
    kw.setdefault("retry", FAST)
    return RegistryClient(server.host, insecure=True, **kw)


def put_blob(app: FakeRegistry, data: bytes) -> Digest:
    app.blobs[sha(data)] = data
    return Digest.parse(sha(data))


def oci_manifest(config: Digest, layer: Digest, size: int = 3) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(config),
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": str(layer),
                    "size": size,
                }
            ],
        },
        indent=1,
    ).encode()


# ---- references ------------------------------------------------------------------------------

REFS = [
    ("busybox", "registry-1.docker.io/library/busybox:latest"),
    ("busybox:1.36", "registry-1.docker.io/library/busybox:1.36"),
    ("docker.io/busybox", "registry-1.docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:1", "registry-1.docker.io/library/busybox:1"),
    ("docker.io/team/app:v1", "registry-1.docker.io/team/app:v1"),
    ("team/app", "registry-1.docker.io/team/app:latest"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/a/b/c:t_1.2-x", "localhost:5000/a/b/c:t_1.2-x"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
    ("quay.io/org/app__x.y-z:v", "quay.io/org/app__x.y-z:v"),
    ("[::1]:5000/app:v", "[::1]:5000/app:v"),
    ("ghcr.io/o/a@sha256:" + "a" * 64, "ghcr.io/o/a@sha256:" + "a" * 64),
    ("ghcr.io/o/a:v1@sha256:" + "b" * 64, "ghcr.io/o/a:v1@sha256:" + "b" * 64),
    ("busybox@sha256:" + "c" * 64, "registry-1.docker.io/library/busybox@sha256:" + "c" * 64),
]


@pytest.mark.parametrize(("text", "canonical"), REFS)
def test_reference_parse(text: str, canonical: str) -> None:
    ref = parse_ref(text)
    assert str(ref) == canonical
    assert RegistryReference.parse(canonical) == ref


def test_reference_parts() -> None:
    ref = parse_ref("ghcr.io/o/a:v1@sha256:" + "b" * 64)
    assert (ref.host, ref.repository, ref.tag) == ("ghcr.io", "o/a", "v1")
    assert ref.ref == "sha256:" + "b" * 64  # the digest wins
    assert parse_ref("busybox").ref == "latest"
    assert parse_ref("busybox").is_docker_hub


@pytest.mark.parametrize(
    "text",
    ["", "host/App", "host/a//b", "host/a:", "host/a:-tag", "host/a:" + "t" * 129, "a@sha256:zz",
     "host/a@md5", "https://host/a", "host/a_-b", "host/-a", "host:99999999/a"],
)  # fmt: skip
def test_reference_rejects(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_ref(text)


@pytest.mark.parametrize(
    "text", ["user:s3cr3tpw@host.example/app:v1", "user:s3cr3tpw@host.example"]
)
def test_reference_refuses_credentials_without_echoing_them(text: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_ref(text)
    assert "s3cr3tpw" not in str(info.value)
    assert "credentials never go in URIs" in str(info.value)


# ---- retry policy -----------------------------------------------------------------------------


def test_retry_after_values() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_retry_delay_is_capped_and_jittered() -> None:
    policy = RetryPolicy(backoff_base=1, backoff_max=4, retry_after_max=5)
    assert all(0.5 <= policy.delay(1) <= 1 for _ in range(50))
    assert all(2 <= policy.delay(10) <= 4 for _ in range(50))
    import httpx

    response = httpx.Response(429, headers={"Retry-After": "3600"})
    assert 5 <= policy.delay(1, response) <= 6


# ---- manifests ---------------------------------------------------------------------------------


def test_manifest_roundtrip_exact_bytes(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    raw = oci_manifest(put_blob(app, b"{}"), put_blob(app, b"abc"))
    with client_for(server) as c:
        digest = c.put_manifest("team/app", "v1", raw, OCI_MANIFEST)
        assert str(digest) == sha(raw)
        put = app.requests("PUT", "/manifests/v1")[0]
        assert put.body == raw and put.headers["content-type"] == OCI_MANIFEST
        got = c.get_manifest("team/app", "v1")
        assert got == (raw, OCI_MANIFEST, digest)
        assert (
            "application/vnd.oci.image.index.v1+json"
            in app.requests("GET", "/manifests/v1")[0].headers["accept"]
        )
        assert c.get_manifest("team/app", str(digest)).raw == raw
        head = c.head_manifest("team/app", "v1")
        assert head is not None and head.digest == digest and head.size == len(raw)
        assert c.head_manifest("team/app", "nope") is None


def test_manifest_with_content_encoding(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    raw = oci_manifest(put_blob(app, b"{}"), put_blob(app, b"abc"))
    app.manifests[("a", "v1")] = (raw, OCI_MANIFEST)
    app.gzip_manifests = True
    with client_for(server) as c:
        assert c.get_manifest("a", "v1").raw == raw
    assert "gzip" in app.requests("GET", "/manifests/")[0].headers["accept-encoding"]


def test_manifest_wrong_docker_content_digest(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    raw = oci_manifest(put_blob(app, b"{}"), put_blob(app, b"abc"))
    app.manifests[("a", "v1")] = (raw, OCI_MANIFEST)
    app.manifest_digest = "sha256:" + "0" * 64
    with client_for(server) as c, pytest.raises(DigestMismatch) as info:
        c.get_manifest("a", "v1")
    assert "Docker-Content-Digest" in str(info.value) and "0" * 64 in str(info.value)


def test_manifest_by_digest_body_checked(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    raw = oci_manifest(put_blob(app, b"{}"), put_blob(app, b"abc"))
    wanted = "sha256:" + "1" * 64
    app.manifests[("a", wanted)] = (raw, OCI_MANIFEST)
    app.manifest_digest = wanted  # the header lies the same way: only the body check catches it
    with client_for(server) as c, pytest.raises(DigestMismatch) as info:
        c.get_manifest("a", wanted)
    assert info.value.expected == wanted and info.value.actual == sha(raw)


def test_manifest_content_type_must_match_media_type(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    raw = oci_manifest(put_blob(app, b"{}"), put_blob(app, b"abc"))
    app.manifests[("a", "v1")] = (raw, OCI_MANIFEST)
    app.content_type = "application/vnd.docker.distribution.manifest.v2+json"
    with (
        client_for(server) as c,
        pytest.raises(MalformedInput, match="does not match its mediaType"),
    ):
        c.get_manifest("a", "v1")
    app.content_type = "application/json"  # generic types defer to the body
    with client_for(server) as c:
        assert c.get_manifest("a", "v1").media_type == OCI_MANIFEST


def test_manifest_schema1_header_digest_not_checked(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    raw = json.dumps(
        {"schemaVersion": 1, "name": "a", "tag": "v1", "fsLayers": [], "signatures": []}
    ).encode()
    app.manifests[("a", "v1")] = (raw, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    app.manifest_digest = (
        "sha256:" + "2" * 64
    )  # schema1 digests cover the payload without signatures
    with client_for(server) as c:
        got = c.get_manifest("a", "v1")
    assert got.media_type.endswith("v1+prettyjws") and str(got.digest) == app.manifest_digest


def test_manifest_size_cap(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "pad": "x" * (5 << 20)}
    ).encode()
    app.manifests[("a", "big")] = (raw, OCI_MANIFEST)
    with client_for(server) as c, pytest.raises(LimitExceeded):
        c.get_manifest("a", "big")


def test_missing_manifest_is_image_not_found(fake: tuple[FakeRegistry, Server]) -> None:
    _, server = fake
    with client_for(server) as c, pytest.raises(ImageNotFound) as info:
        c.get_manifest("team/app", "v9")
    assert (
        str(info.value)
        == f"manifest {server.host}/team/app:v9: not found (MANIFEST_UNKNOWN: manifest unknown)"
    )


def test_error_body_parsed_into_codes(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    app.faults.append(Fault("PUT", "/manifests/", 400))
    with client_for(server) as c, pytest.raises(RegistryError) as info:
        c.put_manifest("a", "v1", b"{}", OCI_MANIFEST)
    assert (
        info.value.status == 400 and info.value.codes == ("UNKNOWN",) and not info.value.retryable
    )
    assert "\n" not in str(info.value)


def test_list_tags_follows_link_pages(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    app.tags["a/b"] = [f"t{i:02d}" for i in range(7)]
    with client_for(server) as c:
        assert c.list_tags("a/b", page_size=3) == [f"t{i:02d}" for i in range(7)]
    assert len(app.requests("GET", "/tags/list")) == 3


# ---- retries ------------------------------------------------------------------------------------


def test_retry_on_500_then_success(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    digest = put_blob(app, b"hello")
    app.faults.append(Fault("HEAD", "/blobs/", 500, times=2))
    with client_for(server) as c:
        assert c.head_blob("a", digest) == 5
        assert c.stats.retries == 2
    assert len(app.requests("HEAD")) == 3


def test_retry_after_is_honoured(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    digest = put_blob(app, b"hello")
    app.faults.append(Fault("HEAD", "/blobs/", 429, {"Retry-After": "1"}))
    with client_for(server) as c:
        started = time.monotonic()
        assert c.head_blob("a", digest) == 5
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.0


def test_retries_exhausted_is_retryable_registry_error(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    app.faults.append(Fault("GET", "/manifests/", 503, times=10))
    with client_for(server) as c, pytest.raises(RegistryError) as info:
        c.get_manifest("a", "v1")
    assert info.value.status == 503 and info.value.retryable
    assert len(app.requests("GET", "/manifests/")) == FAST.attempts


def test_connection_refused_becomes_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        RegistryClient(f"127.0.0.1:{port}", insecure=True, retry=FAST) as c,
        pytest.raises(TransportError) as info,
    ):
        c.ping()
    assert "ConnectError" in str(info.value) and "after 4 attempts" in str(info.value)


# ---- blobs: download -----------------------------------------------------------------------------


@pytest.fixture(params=["pooled", "direct"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways a blob body is read: through httpx, and straight from the socket (bodies
    of ``body.DIRECT_MIN`` bytes and more; lowered here to take these small blobs)."""
    if request.param == "pooled":
        yield "pooled"
        return
    direct = body._direct
    calls: list[int] = []

    def counted(*args: Any) -> Iterator[bytes]:
        calls.append(1)
        return direct(*args)

    monkeypatch.setattr(body, "DIRECT_MIN", 0)
    monkeypatch.setattr(body, "_direct", counted)
    yield "direct"
    assert calls, "no blob body was read straight from the socket"


def test_blob_streams_and_verifies(fake: tuple[FakeRegistry, Server], read_path: str) -> None:
    app, server = fake
    data = os.urandom(3 << 20)
    digest = put_blob(app, data)
    with client_for(server) as c, c.open_blob("a", digest, len(data)) as reader:
        got = b"".join(iter(lambda: reader.read(100_000), b""))
        assert got == data and reader.verified and reader.resumes == 0
        assert c.stats.bytes_downloaded == len(data)
    assert app.requests("GET", "/blobs/")[0].headers["accept-encoding"] == "identity"


def test_blob_resumes_with_range_after_drop(
    fake: tuple[FakeRegistry, Server], read_path: str
) -> None:
    app, server = fake
    data = os.urandom(3 << 20)
    digest = put_blob(app, data)
    app.drop_blob_at = (1 << 20) + 12345
    with client_for(server) as c, c.open_blob("a", digest, len(data)) as reader:
        got = b"".join(reader.chunks())
        assert got == data and reader.resumes == 1 and reader.verified
        assert c.stats.resumes == 1
    gets = app.requests("GET", "/blobs/")
    assert len(gets) == 2 and "range" not in gets[0].headers
    resumed_at = int(gets[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= app.drop_blob_at


def test_blob_resumes_after_read_timeout(fake: tuple[FakeRegistry, Server], read_path: str) -> None:
    app, server = fake
    data = os.urandom(2 << 20)
    digest = put_blob(app, data)
    app.stall_blob_at = 1 << 20
    with client_for(server, timeout=0.5) as c, c.open_blob("a", digest, len(data)) as reader:
        assert b"".join(reader.chunks()) == data and reader.resumes == 1


def test_blob_resume_when_server_ignores_range(
    fake: tuple[FakeRegistry, Server], read_path: str
) -> None:
    app, server = fake
    data = os.urandom(2 << 20)
    digest = put_blob(app, data)
    app.drop_blob_at, app.ignore_range = 1 << 20, True
    with client_for(server) as c, c.open_blob("a", digest, len(data)) as reader:
        assert b"".join(reader.chunks()) == data and reader.resumes == 1


def test_corrupted_blob_names_the_blob(fake: tuple[FakeRegistry, Server], read_path: str) -> None:
    app, server = fake
    data = os.urandom(1000)
    digest = put_blob(app, data)
    app.corrupt = True
    with client_for(server) as c, c.open_blob("team/app", digest, len(data)) as reader:
        with pytest.raises(DigestMismatch) as info:
            reader.read()
    assert f"blob {server.host}/team/app@{digest}" in str(info.value)


def test_blob_size_mismatch(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = os.urandom(1000)
    digest = put_blob(app, data)
    with client_for(server) as c, pytest.raises(SizeMismatch):
        c.open_blob("a", digest, 999)


def test_missing_blob(fake: tuple[FakeRegistry, Server]) -> None:
    _, server = fake
    with client_for(server) as c, pytest.raises(BlobNotFound):
        c.open_blob("a", Digest.parse("sha256:" + "3" * 64))


class _Storage:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs, self.seen = blobs, []  # type: ignore[var-annotated]
        self.ignore_range, self.drop_blob_at, self.stall_blob_at, self.drops = False, None, None, 0

    def handle(self, h: Any) -> None:
        self.seen.append({k.lower(): v for k, v in h.headers.items()})
        serve_blob(h, self.blobs[h.path.rsplit("/", 1)[1]], self)


def test_redirect_to_other_host_drops_authorization(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = os.urandom(5000)
    digest = put_blob(app, data)
    app.basic = ("alice", "wonderland-pw")
    storage_app = _Storage(app.blobs)
    storage = Server(storage_app)
    app.redirect_blobs_to = storage.url
    try:
        creds = Credentials("alice", "wonderland-pw")
        with (
            client_for(server, credentials=creds) as c,
            c.open_blob("a", digest, len(data)) as reader,
        ):
            assert reader.read() == data
    finally:
        storage.close()
    assert storage_app.seen and all("authorization" not in h for h in storage_app.seen)
    assert app.requests("GET", "/blobs/")[-1].headers["authorization"].startswith("Basic ")


# ---- blobs: upload --------------------------------------------------------------------------------


class OnePass:
    """A reader that cannot seek or be reopened (like a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._b = io.BytesIO(data)

    def read(self, n: int = -1, /) -> bytes:
        return self._b.read(n)


def test_upload_monolithic_keeps_location_query(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = os.urandom(100_000)
    with client_for(server) as c:
        result = c.upload_blob("a/b", io.BytesIO(data), Digest.parse(sha(data)), len(data))
    assert result.outcome == "uploaded" and app.blobs[sha(data)] == data
    (put,) = app.requests("PUT", "/uploads/")
    assert "_state=s0" in put.path and "digest=sha256" in put.path and put.body == data
    assert not app.requests("PATCH")


def test_upload_exists_skips(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    digest = put_blob(app, b"present")
    with client_for(server) as c:
        assert c.upload_blob("a", io.BytesIO(b"present"), digest, 7).outcome == "exists"
    assert not app.requests("POST")


def test_upload_mount_and_refused_mount(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = b"layer bytes"
    digest = put_blob(app, data)
    with client_for(server) as c:
        # HEAD says absent in the target repo? our fake is global, so force the HEAD miss:
        app.faults.append(Fault("HEAD", "/v2/dst/blobs/", 404))
        assert (
            c.upload_blob("dst", io.BytesIO(data), digest, len(data), mount_from="src").outcome
            == "mounted"
        )
        post = app.requests("POST")[-1]
        assert f"mount={digest}".replace(":", "%3A") in post.path and "from=src" in post.path
        app.mountable = False
        app.faults.append(Fault("HEAD", "/v2/dst/blobs/", 404))
        assert (
            c.upload_blob("dst", io.BytesIO(data), digest, len(data), mount_from="src").outcome
            == "uploaded"
        )


@pytest.mark.parametrize("status", [403, 404, 500])
def test_a_failed_mount_request_falls_back_to_an_upload(
    fake: tuple[FakeRegistry, Server], status: int
) -> None:
    """A mount hint from an earlier run may name a repository we may no longer read, or one
    that is gone: the push goes on as an upload instead of failing."""
    app, server = fake
    data = b"bytes a stale hint points at"
    digest = Digest.parse(sha(data))
    app.faults.append(Fault("HEAD", "/v2/dst/blobs/", 404))
    app.faults.append(Fault("POST", r"/v2/dst/blobs/uploads/\?.*mount=", status, times=99))
    with client_for(server) as c:
        result = c.upload_blob("dst", io.BytesIO(data), digest, len(data), mount_from="gone/repo")
    assert result.outcome == "uploaded" and app.blobs[sha(data)] == data
    posts = [r.path for r in app.requests("POST")]
    assert "mount=" in posts[0] and "mount=" not in posts[-1]


def test_a_mount_alone_is_one_request_and_a_refusal_cancels_its_session(
    fake: tuple[FakeRegistry, Server],
) -> None:
    app, server = fake
    digest = put_blob(app, b"layer bytes")
    with client_for(server) as c:
        assert c.mount_blob("dst", digest, "src") is True
        assert [(r.method, urlsplit(r.path).path) for r in app.seen] == [
            ("POST", "/v2/dst/blobs/uploads/")
        ]  # no HEAD first
        app.mountable = False
        assert c.mount_blob("dst", digest, "src") is False
        (cancel,) = app.requests("DELETE", "/v2/dst/blobs/uploads/")
        assert not app.uploads  # the session the refusal opened is gone
        app.faults.append(Fault("POST", r"mount=", 500, times=99))
        assert c.mount_blob("dst", digest, "src") is None  # failed, not refused
    assert not app.requests("HEAD") and not app.requests("PUT") and not app.requests("PATCH")


def _mount_sink(server: Server, app: FakeRegistry, data: bytes) -> tuple[RegistrySink, LayerWrite]:
    client = client_for(server)
    ref = parse_ref(f"{server.host}/dst:v1")
    layer_desc = Descriptor(MediaType.DOCKER_LAYER_GZIP, put_blob(app, data), len(data))
    layer = Layer(
        0, MediaType.DOCKER_LAYER_GZIP, layer_desc, None, _unopenable, origin=f"{server.host}/src"
    )
    info = LayerWrite(
        0, MediaType.DOCKER_LAYER_GZIP, layer_desc.digest, layer_desc.size, None, layer
    )
    return RegistrySink(client, ref, RunContext()), info


def _unopenable() -> Any:
    raise AssertionError("a mounted layer is never read")


def test_the_registry_sink_mounts_a_layer_from_its_source_repository(
    fake: tuple[FakeRegistry, Server],
) -> None:
    app, server = fake
    sink, info = _mount_sink(server, app, b"mounted layer")
    try:
        held = sink.mount_layer(info)
        assert held is not None and (held.digest, held.size) == (info.digest, info.size)
        assert sink.has_layer(info.digest) == Descriptor(
            "application/octet-stream", held.digest, held.size
        )  # remembered: no HEAD
        assert [r.method for r in app.seen] == ["POST"]
        other = dataclasses.replace(info, source=dataclasses.replace(info.source, origin=None))
        assert sink.mount_layer(other) is None  # from elsewhere: nothing asked
        assert sink.mount_layer(info) is None  # held already (another platform's): not asked
        assert len(app.seen) == 1
    finally:
        sink.abort()


def test_a_registry_that_refuses_a_mount_is_not_asked_again(
    fake: tuple[FakeRegistry, Server],
) -> None:
    app, server = fake
    app.mountable = False
    sink, info = _mount_sink(server, app, b"refused layer")
    try:
        assert sink.mount_layer(info) is None
        assert [r.method for r in app.seen] == ["POST", "DELETE"]
        assert sink.mount_layer(info) is None and len(app.seen) == 2  # not asked again
        present = sink.has_layer(info.digest)  # the engine asks next: a HEAD
        assert present is not None and app.seen[-1].method == "HEAD"
    finally:
        sink.abort()


def test_upload_chunked_honours_min_chunk(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = os.urandom(5 * 300_000 + 17)
    app.chunk_min = 300_000
    with client_for(server) as c:
        result = c.upload_blob(
            "a",
            io.BytesIO(data),
            Digest.parse(sha(data)),
            len(data),
            chunk_size=1000,
            monolithic_max=0,
        )
    assert result.outcome == "uploaded" and app.blobs[sha(data)] == data
    ranges = [p.headers["content-range"] for p in app.requests("PATCH")]
    assert ranges[:2] == ["0-299999", "300000-599999"] and len(ranges) == 6


def test_upload_single_pass_unknown_digest(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = os.urandom(700_000)
    with client_for(server) as c:
        result = c.upload_blob("a", OnePass(data), chunk_size=256 << 10)
    assert result.digest == Digest.parse(sha(data)) and result.size == len(data)
    assert app.blobs[sha(data)] == data and len(app.requests("PATCH")) == 3


def test_upload_recovers_from_416(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = os.urandom(600_000)
    app.faults.append(Fault("PATCH", "/uploads/", 416))
    with client_for(server) as c:
        c.upload_blob("a", OnePass(data), Digest.parse(sha(data)), len(data), chunk_size=256 << 10)
    assert app.blobs[sha(data)] == data
    assert app.requests("GET", "/uploads/"), "the session status was asked after the 416"


class Tracked(OnePass):
    """A single-pass reader that records its reads (and can fail after ``fail_at`` bytes)."""

    def __init__(self, data: bytes, fail_at: int | None = None) -> None:
        super().__init__(data)
        self.size, self.fail_at, self.reads = len(data), fail_at, []

    def read(self, n: int = -1, /) -> bytes:
        if self.fail_at is not None and self._b.tell() >= self.fail_at:
            raise DigestMismatch("the source blob", "sha256:" + "1" * 64, "sha256:" + "2" * 64)
        self.reads.append(n)
        return super().read(n)

    @property
    def at_end(self) -> bool:
        return self._b.tell() == self.size


class Reopener:
    """``reopen`` for an upload: fresh readers of ``data``, counted."""

    def __init__(self, data: bytes) -> None:
        self.data, self.calls = data, 0

    def __call__(self) -> OnePass:
        self.calls += 1
        return OnePass(self.data)


@pytest.mark.parametrize("source", ["seekable", "opener", "one-pass", "one-pass+reopen"])
def test_upload_resends_after_dropped_patch(fake: tuple[FakeRegistry, Server], source: str) -> None:
    app, server = fake
    data = os.urandom(900_000)
    app.drop_patch_at = 100_000  # the server keeps 100 kB of the first PATCH, then hangs up
    src: Any = OnePass(data)
    reopen = Reopener(data) if source == "one-pass+reopen" else None
    if source == "seekable":
        src = io.BytesIO(data)
    elif source == "opener":
        src = functools.partial(io.BytesIO, data)
    elif reopen is not None:
        src = Tracked(data)
    with client_for(server) as c:
        result = c.upload_blob(
            "a",
            src,
            Digest.parse(sha(data)),
            len(data),
            chunk_size=300_000,
            monolithic_max=0,
            reopen=reopen,
        )
    assert result.outcome == "uploaded" and app.blobs[sha(data)] == data
    ranges = [p.headers["content-range"] for p in app.requests("PATCH")]
    assert ranges[0] == "0-299999" and ranges[1].startswith("100000-")
    if reopen is not None:
        # bytes 100000-299999 came from a fresh copy; the stream itself was read once, to its end
        assert reopen.calls == 1 and src.at_end and sum(src.reads) <= len(data) + 2 * 300_000


def test_upload_streams_a_single_pass_source(fake: tuple[FakeRegistry, Server]) -> None:
    """A download copied to a registry: sent as it is read (1 MiB reads, nothing buffered),
    never hashed again, never re-read when nothing fails."""
    app, server = fake
    data = os.urandom((40 << 20) + 5)
    src, reopen = Tracked(data), Reopener(data)
    read_when_patch_began: list[int] = []
    app.on_patch = lambda: read_when_patch_began.append(src._b.tell())
    with client_for(server) as c:
        result = c.upload_blob(
            "a", src, Digest.parse(sha(data)), len(data), chunk_size=32 << 20, reopen=reopen
        )
    # a buffered chunk would have been read whole (32 MiB) before its PATCH went out
    assert read_when_patch_began[0] < 16 << 20, read_when_patch_began
    assert result == ("uploaded", Digest.parse(sha(data)), len(data))
    assert app.blobs[sha(data)] == data
    ranges = [p.headers["content-range"] for p in app.requests("PATCH")]
    assert ranges == [f"0-{(32 << 20) - 1}", f"{32 << 20}-{len(data) - 1}"]
    assert max(src.reads) <= 1 << 20 and src.at_end and reopen.calls == 0


def test_upload_streamed_blob_goes_in_few_patches(fake: tuple[FakeRegistry, Server]) -> None:
    """Each PATCH costs the registry a flush and fsync: a big streamed blob goes in at most
    STREAM_PATCHES requests whose size is a multiple of STREAM_CHUNK (16 MiB); a 34 MiB one
    still goes in 16 MiB PATCHes."""
    from occystrap.transports.registry.upload import STREAM_CHUNK, STREAM_PATCHES, stream_chunk

    assert STREAM_CHUNK == 16 << 20 and STREAM_PATCHES == 3
    assert stream_chunk(34 << 20) == 16 << 20 and stream_chunk(None) == 16 << 20
    assert stream_chunk(200_000_000) == 64 << 20 and stream_chunk(48 << 20) == 16 << 20
    assert stream_chunk((48 << 20) + 1) == 32 << 20
    app, server = fake
    data = os.urandom((100 << 20) + 7)
    src, reopen = Tracked(data), Reopener(data)
    with client_for(server) as c:
        result = c.upload_blob("a", src, Digest.parse(sha(data)), len(data), reopen=reopen)
    assert result == ("uploaded", Digest.parse(sha(data)), len(data))
    assert app.blobs[sha(data)] == data
    ranges = [p.headers["content-range"] for p in app.requests("PATCH")]
    step = 48 << 20
    assert ranges == [f"0-{step - 1}", f"{step}-{2 * step - 1}", f"{2 * step}-{len(data) - 1}"]
    assert max(src.reads) <= 1 << 20 and src.at_end and reopen.calls == 0


def test_upload_source_error_is_raised_not_retried(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = os.urandom(3 << 20)
    src, reopen = Tracked(data, fail_at=2 << 20), Reopener(data)
    with client_for(server) as c, pytest.raises(DigestMismatch, match="the source blob"):
        c.upload_blob("a", src, Digest.parse(sha(data)), len(data), monolithic_max=0, reopen=reopen)
    assert len(app.requests("POST")) == 1 and reopen.calls == 0  # no second attempt
    assert len(app.requests("DELETE", "/uploads/")) == 1 and not app.blobs


def test_upload_without_check_skips_head(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = os.urandom(1000)
    with client_for(server) as c:
        result = c.upload_blob("a", io.BytesIO(data), Digest.parse(sha(data)), 1000, check=False)
    assert result.outcome == "uploaded" and not app.requests("HEAD")


def test_failed_upload_is_cancelled(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = os.urandom(1000)
    wrong = Digest.parse("sha256:" + "4" * 64)
    with client_for(server) as c, pytest.raises(RegistryError) as info:
        c.upload_blob("a", io.BytesIO(data), wrong, len(data))
    assert info.value.codes == ("DIGEST_INVALID",)
    assert len(app.requests("DELETE", "/uploads/")) == 1 and not app.uploads


@pytest.mark.parametrize("monolithic_max", [0, 1 << 20])
def test_upload_short_source_is_size_mismatch(
    fake: tuple[FakeRegistry, Server], monolithic_max: int
) -> None:
    app, server = fake
    data = os.urandom(1000)
    with client_for(server) as c, pytest.raises(SizeMismatch):
        c.upload_blob(
            "a", io.BytesIO(data), Digest.parse(sha(data)), 1001, monolithic_max=monolithic_max
        )
    assert len(app.requests("POST")) == 1 and len(app.requests("DELETE")) == 1 and not app.blobs


def test_upload_restarts_when_session_breaks(fake: tuple[FakeRegistry, Server]) -> None:
    app, server = fake
    data = os.urandom(1000)
    app.faults.append(Fault("PUT", "/uploads/", 502))
    with client_for(server) as c:
        assert (
            c.upload_blob("a", io.BytesIO(data), Digest.parse(sha(data)), len(data)).outcome
            == "uploaded"
        )
    assert len(app.requests("POST")) == 2 and len(app.requests("DELETE")) == 1


# ---- auth errors and secrets ----------------------------------------------------------------------


def test_basic_auth_errors_do_not_leak(
    fake: tuple[FakeRegistry, Server], caplog: pytest.LogCaptureFixture
) -> None:
    app, server = fake
    caplog.set_level(logging.DEBUG)
    app.basic = ("alice", "right-password")
    with client_for(server) as c, pytest.raises(AuthenticationError) as info:
        c.get_manifest("team/app", "v1")
    assert (
        str(info.value)
        == f"authentication required for {server.host}/team/app (no credentials found)"
    )
    with client_for(server, credentials=Credentials("alice", "Wr0ng-Secret-9")) as c:
        with pytest.raises(AuthenticationError) as info:
            c.get_manifest("team/app", "v1")
    assert str(info.value).startswith(f"credentials refused for {server.host}")
    assert "Wr0ng-Secret-9" not in str(info.value) and "Wr0ng-Secret-9" not in caplog.text
    assert base64.b64encode(b"alice:Wr0ng-Secret-9").decode() not in caplog.text


# ---- TLS against the real docker-registry ----------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reg = start_registry("tls", tmp_path_factory.mktemp("tls-registry"))
    try:
        yield reg
    finally:
        reg.stop()


def test_tls_verification_is_on_by_default(tls_registry: Any) -> None:
    with RegistryClient(tls_registry.host, retry=FAST) as c, pytest.raises(TransportError) as info:
        c.ping()
    assert "TLS certificate verification failed" in str(info.value)
    assert c.stats.retries == 0


def test_tls_trusts_cert_dir_and_certs_d(tls_registry: Any, tmp_path: Path) -> None:
    with RegistryClient(tls_registry.host, tls=TLSConfig(cert_dir=str(tls_registry.certs_d))) as c:
        c.ping()
    root = tmp_path / "certs.d"
    (root / tls_registry.host).mkdir(parents=True)
    (root / tls_registry.host / "ca.crt").write_bytes(Path(tls_registry.ca_file).read_bytes())
    with RegistryClient(
        tls_registry.host, tls=TLSConfig(certs_d_roots=(str(root),), user_certs_d=False)
    ) as c:
        c.ping()
    with RegistryClient(
        tls_registry.host, tls=TLSConfig(no_verify_hosts=frozenset({tls_registry.host}))
    ) as c:
        c.ping()


def test_tls_client_pairs(tls_registry: Any, tmp_path: Path) -> None:
    tls_dir = Path(tls_registry.ca_file).parent
    (tmp_path / "client.cert").write_bytes((tls_dir / "cert.pem").read_bytes())
    with pytest.raises(InvalidOption, match="no matching client.key"):
        TLSConfig(cert_dir=str(tmp_path)).context(tls_registry.host)
    (tmp_path / "client.key").write_bytes((tls_dir / "key.pem").read_bytes())
    ctx = TLSConfig(cert_dir=str(tmp_path)).context(tls_registry.host)
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED


def test_plain_http_registry_redirecting_to_https_verifies_it(
    fake: tuple[FakeRegistry, Server], tls_registry: Any
) -> None:
    """An http registry builds its TLS context only for a redirect to https, and verifies."""
    app, server = fake
    data = os.urandom(70_000)
    with RegistryClient(tls_registry.host, tls=TLSConfig(ca_file=str(tls_registry.ca_file))) as c:
        assert c.upload_blob("lab/redir", io.BytesIO(data), Digest.parse(sha(data)), len(data))
    digest = put_blob(app, data)
    app.redirect_blobs_to = f"https://{tls_registry.host}/v2/lab/redir/blobs/{{digest}}"
    trusted = TLSConfig(ca_file=str(tls_registry.ca_file))
    with client_for(server, tls=trusted) as c, c.open_blob("a", digest, len(data)) as reader:
        assert reader.read() == data
    with (
        client_for(server) as c,
        pytest.raises(TransportError, match="TLS certificate verification failed"),
    ):
        c.open_blob("a", digest, len(data)).read()


# ---- the real docker-registry (distribution 2.8) ------------------------------------------------------


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reg = start_registry("plain", tmp_path_factory.mktemp("plain-registry"))
    try:
        yield reg
    finally:
        reg.stop()


def test_real_registry_push_mount_pull(plain_registry: Any, tmp_path: Path) -> None:
    small = os.urandom(200_000)
    big = os.urandom((3 << 20) + 11)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    with RegistryClient(plain_registry.host, insecure=True) as c:
        c.ping()
        d_small, d_big, d_cfg = (Digest.parse(sha(x)) for x in (small, big, config))
        assert (
            c.upload_blob("src/app", io.BytesIO(small), d_small, len(small)).outcome == "uploaded"
        )
        chunked = c.upload_blob("src/app", OnePass(big), d_big, len(big), chunk_size=1 << 20)
        assert chunked == ("uploaded", d_big, len(big))
        assert c.upload_blob("src/app", io.BytesIO(small), d_small, len(small)).outcome == "exists"
        assert c.head_blob("dst/app", d_big) is None
        assert (
            c.upload_blob("dst/app", OnePass(big), d_big, len(big), mount_from="src/app").outcome
            == "mounted"
        )
        assert c.head_blob("dst/app", d_big) == len(big)
        c.upload_blob("dst/app", io.BytesIO(config), d_cfg, len(config))
        c.upload_blob("dst/app", io.BytesIO(small), d_small, len(small), mount_from="src/app")
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": str(d_cfg),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": str(d),
                        "size": n,
                    }
                    for d, n in ((d_small, len(small)), (d_big, len(big)))
                ],
            },
            indent=3,
        ).encode()
        digest = c.put_manifest("dst/app", "v1", manifest, OCI_MANIFEST)
        assert c.get_manifest("dst/app", "v1") == (manifest, OCI_MANIFEST, digest)
        assert c.get_manifest("dst/app", str(digest)).raw == manifest
        head = c.head_manifest("dst/app", "v1")
        assert head == (digest, OCI_MANIFEST, len(manifest))
        assert c.list_tags("dst/app") == ["v1"]
        with c.open_blob("dst/app", d_big, len(big)) as reader:
            assert hashlib.sha256(b"".join(reader.chunks())).hexdigest() == d_big.encoded
        with c.open_blob("dst/app", d_small, len(small)) as reader:
            assert reader.read() == small
        with pytest.raises(ImageNotFound):
            c.get_manifest("dst/app", "nope")
        with pytest.raises(RegistryError) as info:
            c.upload_blob("dst/app", io.BytesIO(b"abc"), Digest.parse("sha256:" + "5" * 64), 3)
        assert "DIGEST_INVALID" in info.value.codes
