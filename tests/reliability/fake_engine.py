"""A fake Docker Engine API on a unix socket that dies in the middle of an image stream.

``FakeEngine(socket_path, archive, inspect)`` answers ``/_ping``, ``/version`` and
``/images/NAME/json`` like a daemon speaking API 1.41, and then misbehaves on purpose:

* ``export_cut_after=N``: ``GET /images/NAME/get`` announces the whole archive
  (``Content-Length``, or chunked with ``export_chunked``) and closes the connection after N
  bytes, as a daemon that crashed mid-export.
* ``load_cut_after=N``: ``POST /images/load`` reads N bytes of the upload and closes the
  connection without an answer; ``None`` reads the whole upload and then closes silently.

``received`` counts the upload bytes the fake read; ``complete`` tells whether the upload
reached the end of its chunked body (it never loads anything either way).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(
        self,
        path: Path,
        archive: Path | None = None,
        inspect: dict[str, Any] | None = None,
        *,
        export_cut_after: int | None = None,
        export_chunked: bool = False,
        load_cut_after: int | None = None,
    ) -> None:
        super().__init__(str(path), _Handler)
        self.path = path
        self.archive = archive
        self.inspect = inspect or {}
        self.export_cut_after = export_cut_after
        self.export_chunked = export_chunked
        self.load_cut_after = load_cut_after
        self.received = 0
        self.complete = False
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> FakeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeEngine

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.41")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _die(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        self.server.requests.append(f"GET {self.path}")
        path = self.path.split("?", 1)[0]
        if path == "/_ping":
            self._json(200, b"OK")
        elif path == "/version":
            self._json(
                200, {"ApiVersion": "1.41", "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64"}
            )
        elif path.endswith("/json"):
            self._json(200, self.server.inspect)
        elif path.endswith("/get") and self.server.archive is not None:
            self._export(self.server.archive)
        else:
            self._json(404, {"message": "no such image"})

    def _export(self, archive: Path) -> None:
        total = archive.stat().st_size
        cut = self.server.export_cut_after if self.server.export_cut_after is not None else total
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        if self.server.export_chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(total))
        self.end_headers()
        sent = 0
        with open(archive, "rb") as f:
            while sent < cut:
                data = f.read(min(64 << 10, cut - sent))
                if not data:
                    break
                if self.server.export_chunked:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                else:
                    self.wfile.write(data)
                sent += len(data)
        if sent >= total and self.server.export_chunked:
            self.wfile.write(b"0\r\n\r\n")
        if sent < total:
            self._die()

    def do_POST(self) -> None:
        self.server.requests.append(f"POST {self.path}")
        if not self.path.split("?", 1)[0].endswith("/images/load"):
            self._json(404, {"message": "not here"})
            return
        cut = self.server.load_cut_after
        while cut is None or self.server.received < cut:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                self.server.complete = True
                break
            want = size if cut is None else min(size, cut - self.server.received)
            self.server.received += len(self.rfile.read(want))
            if want < size:
                break
            self.rfile.readline()
        self._die()
