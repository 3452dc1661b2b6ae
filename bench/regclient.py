"""A minimal registry client (stdlib ``http.client``) for floors and output checks.

Only what the floors need: stream a blob, start/stream/finish an upload (chunked PATCH),
mount a blob across repositories, read and put manifests. One keep-alive connection.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
CHUNK = 1 << 20


class RegistryError(RuntimeError):
    """An unexpected HTTP status from the registry."""


class RegClient:
    """A registry at ``host`` (``127.0.0.1:PORT``): plain HTTP, or HTTPS trusting
    ``ca_file``."""

    def __init__(self, host: str, timeout: float = 600, ca_file: str | None = None) -> None:
        self.host = host
        self.conn: http.client.HTTPConnection
        if ca_file is None:
            self.conn = http.client.HTTPConnection(host, timeout=timeout)
        else:
            context = ssl.create_default_context(cafile=ca_file)
            self.conn = http.client.HTTPSConnection(host, timeout=timeout, context=context)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RegClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        self.conn.request(method, path, body=body, headers=headers or {})
        return self.conn.getresponse()

    def _call(
        self,
        method: str,
        path: str,
        expect: tuple[int, ...],
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        resp = self._send(method, path, body, headers)
        data = resp.read()
        if resp.status not in expect:
            raise RegistryError(f"{method} {path}: HTTP {resp.status} {data[:200]!r}")
        return resp, data

    @staticmethod
    def _path(location: str) -> str:
        parts = urlsplit(location)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def blob_chunks(self, repo: str, digest: str, size: int = CHUNK) -> Iterator[memoryview]:
        """Stream a blob in chunks of up to ``size`` bytes (the view is reused: copy to keep)."""
        resp = self._send("GET", f"/v2/{repo}/blobs/{digest}")
        if resp.status != 200:
            data = resp.read()
            raise RegistryError(f"GET blob {digest}: HTTP {resp.status} {data[:200]!r}")
        buf = memoryview(bytearray(size))
        while n := resp.readinto(buf):
            yield buf[:n]

    def manifest(self, repo: str, ref: str) -> tuple[int, bytes]:
        """(status, body) of GET manifest (any status)."""
        resp = self._send("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
        return resp.status, resp.read()

    def start_upload(self, repo: str) -> str:
        resp, _ = self._call("POST", f"/v2/{repo}/blobs/uploads/", (202,))
        return self._path(resp.headers["Location"])

    def mount(self, repo: str, digest: str, source: str) -> bool:
        """Cross-repository mount; True when the registry mounted it (201)."""
        resp, _ = self._call(
            "POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}", (201, 202)
        )
        if resp.status == 202:  # not mounted: an upload session was opened instead; cancel it
            self._call("DELETE", self._path(resp.headers["Location"]), (204, 404))
        return resp.status == 201

    def upload(self, repo: str, chunks: Iterable[bytes | memoryview], digest_of: Any) -> str:
        """Stream ``chunks`` in one chunked PATCH, then PUT; ``digest_of()`` gives the digest
        once the chunks are consumed (so hashing happens while sending)."""
        location = self.start_upload(repo)
        headers = {"Content-Type": "application/octet-stream"}
        resp, _ = self._call("PATCH", location, (202,), body=chunks, headers=headers)
        location = self._path(resp.headers["Location"])
        sep = "&" if "?" in location else "?"
        digest: str = digest_of()
        self._call(
            "PUT", f"{location}{sep}digest={digest}", (201,), headers={"Content-Length": "0"}
        )
        return digest

    def put_blob(self, repo: str, data: bytes, digest: str) -> None:
        location = self.start_upload(repo)
        sep = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream"}
        self._call("PUT", f"{location}{sep}digest={digest}", (201,), body=data, headers=headers)

    def put_manifest(self, repo: str, tag: str, data: bytes, media_type: str) -> None:
        headers = {"Content-Type": media_type}
        self._call("PUT", f"/v2/{repo}/manifests/{tag}", (201,), body=data, headers=headers)

    def layer_sizes(self, repo: str, ref: str) -> list[int]:
        """Compressed layer sizes of an image manifest (for output-size checks)."""
        status, body = self.manifest(repo, ref)
        if status != 200:
            raise RegistryError(f"GET manifest {repo}:{ref}: HTTP {status}")
        return [int(layer["size"]) for layer in json.loads(body)["layers"]]
