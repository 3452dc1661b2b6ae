"""A counting, fault-injecting HTTP proxy on loopback in front of a real registry.

Unlike the proxy of ``tests/transports/test_registry_faults.py`` (which reads a request body
whole before forwarding), this one streams request bodies upstream as they arrive, so it can
cut an upload *while the client is still sending it* (a registry dying mid-push). It forwards
the client's ``Host`` header, so the registry's absolute upload URLs point back at the proxy.

Every request is recorded (:class:`Exchange`: method, path, ``Range``, request and response
body bytes), which is how tests count what a rerun transferred. :class:`Rule` says what to do
to matching requests: answer a status, hold the answer (a stall; ``delay=math.inf`` never
recovers), stall or cut the response body after N bytes, cut the request body after N
bytes, or drop the connection. ``dead = True`` drops every connection on arrival (a registry
that is gone); a rule with ``then_dead`` sets it when it fires.
"""

from __future__ import annotations

import http.client
import http.server
import math
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

CHUNK = 64 << 10
_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
)


@dataclass
class Exchange:
    """One request as the proxy saw it, with the body bytes that crossed it each way."""

    method: str
    path: str
    headers: dict[str, str]
    status: int | None = None
    sent_up: int = 0  # request body bytes forwarded to the registry
    served: int = 0  # response body bytes written back to the client
    cut: bool = False  # the proxy broke this exchange off on purpose


Match = Callable[[str, str, Mapping[str, str]], bool]


@dataclass
class Rule:
    """What to do to the first ``times`` requests ``match`` accepts (``times=None``: all)."""

    match: Match
    times: int | None = 1
    status: int | None = None  # answer this instead of forwarding
    headers: Mapping[str, str] = field(default_factory=dict)  # extra headers on a status answer
    delay: float = 0.0  # hold the request this long before forwarding (math.inf: forever)
    cut_request_after: int | None = None  # forward this many body bytes, then drop both sides
    cut_response_after: int | None = None  # serve this many body bytes, then drop the client
    stall_response_after: int | None = None  # serve this many body bytes, then hold ...
    stall_for: float = math.inf  # ... this long, then go on (math.inf: drop when released)
    drop: bool = False  # close the connection without an answer
    then_dead: bool = False  # after this rule fired, every later request is dropped
    hits: int = 0


class RegistryProxy:
    """``RegistryProxy(upstream_host)``; ``host`` is ``127.0.0.1:PORT`` to give the client."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.log: list[Exchange] = []
        self.dead = False
        self.closing = threading.Event()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    # -- control --------------------------------------------------------------------------------

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> RegistryProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Forget rules and the request log (a fresh count for the next run)."""
        with self._lock:
            self.rules.clear()
            self.log.clear()
            self.dead = False

    def exchanges(self, method: str | None = None, contains: str = "") -> list[Exchange]:
        with self._lock:
            return [
                e for e in self.log if (method is None or e.method == method) and contains in e.path
            ]

    def served(self, contains: str = "") -> int:
        """Response body bytes served for paths containing ``contains``."""
        return sum(e.served for e in self.exchanges(None, contains))

    def sent_up(self, contains: str = "") -> int:
        """Request body bytes forwarded for paths containing ``contains``."""
        return sum(e.sent_up for e in self.exchanges(None, contains))

    def _rule(self, method: str, path: str, headers: Mapping[str, str]) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if (rule.times is None or rule.hits < rule.times) and rule.match(
                    method, path, headers
                ):
                    rule.hits += 1
                    return rule
        return None

    # -- one request ----------------------------------------------------------------------------

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in h.headers.items()}
        ex = Exchange(h.command, h.path, headers)
        with self._lock:
            self.log.append(ex)
        if self.dead:
            return _drop(h, ex)
        rule = self._rule(h.command, h.path, headers)
        if rule is not None and rule.then_dead:
            self.dead = True  # later requests; this one still gets its fault below
        if rule is not None and rule.drop:
            return _drop(h, ex)
        if rule is not None and rule.delay:
            self.closing.wait(None if math.isinf(rule.delay) else rule.delay)
            if math.isinf(rule.delay) or self.closing.is_set():
                return _drop(h, ex)
        if rule is not None and rule.status is not None:
            _read_body(h)
            ex.status = rule.status
            return _answer(h, rule.status, rule.headers)
        try:
            self._forward(h, ex, rule)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            h.close_connection = True

    def _forward(
        self, h: http.server.BaseHTTPRequestHandler, ex: Exchange, rule: Rule | None
    ) -> None:
        up = http.client.HTTPConnection(self.upstream, timeout=120)
        try:
            up.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for key, value in h.headers.items():
                if key.lower() not in _HOP:
                    up.putheader(key, value)
            if h.headers.get("transfer-encoding", "").lower() == "chunked":
                body = _read_chunked(h)
                up.putheader("Content-Length", str(len(body)))
                up.endheaders()
                up.send(body)
                ex.sent_up = len(body)
            else:
                length = int(h.headers.get("content-length") or 0)
                if length or h.command in ("POST", "PUT", "PATCH"):
                    up.putheader("Content-Length", str(length))
                up.endheaders()
                cut = rule.cut_request_after if rule is not None else None
                left = length
                while left:
                    want = min(CHUNK, left)
                    if cut is not None:
                        want = min(want, cut - ex.sent_up)
                        if want <= 0:
                            ex.cut = True
                            up.close()
                            return _drop(h, ex)
                    data = h.rfile.read(want)
                    if not data:
                        h.close_connection = True
                        return None
                    up.send(data)
                    ex.sent_up += len(data)
                    left -= len(data)
            resp = up.getresponse()
            ex.status = resp.status
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
            length_header = resp.getheader("content-length")
            if h.command == "HEAD" or length_header is None:
                data = resp.read()
                h.send_response(resp.status)
                for k, v in out:
                    h.send_header(k, v)
                h.send_header(
                    "Content-Length",
                    length_header if h.command == "HEAD" and length_header else str(len(data)),
                )
                h.end_headers()
                if h.command != "HEAD" and data:
                    h.wfile.write(data)
                    ex.served += len(data)
                return None
            h.send_response(resp.status)
            for k, v in out:
                h.send_header(k, v)
            h.send_header("Content-Length", length_header)
            h.end_headers()
            self._relay(h, resp, ex, rule)
        finally:
            up.close()
        return None

    def _relay(
        self,
        h: http.server.BaseHTTPRequestHandler,
        resp: http.client.HTTPResponse,
        ex: Exchange,
        rule: Rule | None,
    ) -> None:
        cut = rule.cut_response_after if rule is not None else None
        stall = rule.stall_response_after if rule is not None else None
        while True:
            want = CHUNK
            for limit in (cut, stall):
                if limit is not None and limit > ex.served:
                    want = min(want, limit - ex.served)
            if cut is not None and ex.served >= cut:
                ex.cut = True
                return _drop(h, ex)
            if stall is not None and ex.served >= stall:
                assert rule is not None
                stall = None
                h.wfile.flush()
                self.closing.wait(None if math.isinf(rule.stall_for) else rule.stall_for)
                if math.isinf(rule.stall_for) or self.closing.is_set():
                    ex.cut = True
                    return _drop(h, ex)
            data = resp.read(want)
            if not data:
                return None
            h.wfile.write(data)
            ex.served += len(data)


def _drop(h: http.server.BaseHTTPRequestHandler, ex: Exchange) -> None:
    """Close the client's connection without an answer."""
    ex.cut = True
    h.close_connection = True
    try:
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _read_chunked(h: http.server.BaseHTTPRequestHandler) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(h.rfile.read(size))
        h.rfile.readline()


def _read_body(h: http.server.BaseHTTPRequestHandler) -> None:
    if h.headers.get("transfer-encoding", "").lower() == "chunked":
        _read_chunked(h)
        return
    left = int(h.headers.get("content-length") or 0)
    while left > 0:
        data = h.rfile.read(min(CHUNK, left))
        if not data:
            return
        left -= len(data)


def _answer(h: http.server.BaseHTTPRequestHandler, status: int, headers: Mapping[str, str]) -> None:
    body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}'
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    for k, v in headers.items():
        h.send_header(k, v)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


# -- request matchers -------------------------------------------------------------------------


def blob_get(digest: str | None = None) -> Match:
    """GETs of blobs (of one digest when given)."""

    def match(method: str, path: str, headers: Mapping[str, str]) -> bool:
        return (
            method == "GET"
            and "/blobs/sha256:" in path
            and (digest is None or path.endswith(digest))
        )

    return match


def manifest_get(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return method in ("GET", "HEAD") and "/manifests/" in path


def upload_put(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return method == "PUT" and "/blobs/uploads/" in path


def upload_patch(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return method == "PATCH" and "/blobs/uploads/" in path


def any_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return True
