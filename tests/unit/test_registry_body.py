"""Large blob bodies read straight from the socket (occystrap.transports.registry.body).

A scripted HTTP server on loopback sends each answer exactly as a test wants it: the body in
irregular pieces, cut short, stalled, chunked or gzip-encoded. A count of h11's events shows
which way a body went: straight from the socket takes h11 only for the headers and what came
with them; through httpx, h11 handles every read. The real TLS registry checks the path over
``ssl.SSLSocket``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from lab.loopback import accept_each
from lab.registry import start_registry
from occystrap.model.digest import Digest
from occystrap.transports.registry import RegistryClient, RetryPolicy, TLSConfig, body

CHUNK = body.CHUNK
BIG = body.DIRECT_MIN + 3 * CHUNK + 12345  # a straight-from-the-socket body, not chunk-aligned


@dataclass
class Answer:
    """One scripted response: ``head`` then the body ``pieces`` (``gap`` seconds apart); then
    the connection waits for the next request, or is closed (``close``, or after ``stall``
    seconds)."""

    head: bytes
    pieces: list[bytes]
    stall: float = 0.0
    gap: float = 0.0
    close: bool = False


@dataclass
class Scripted:
    answer: Callable[[], Answer]
    connections: int = 0
    sock: socket.socket = field(default_factory=socket.socket)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/blob"


def _serve(server: Scripted, conn: socket.socket) -> None:
    server.connections += 1
    threading.Thread(target=_answer, args=(server, conn), daemon=True).start()


def _answer(server: Scripted, conn: socket.socket) -> None:
    with conn:
        try:
            while True:  # a keep-alive connection may carry several requests
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(65536)
                    if not data:
                        return
                    request += data
                answer = server.answer()
                conn.sendall(answer.head)
                for piece in answer.pieces:
                    conn.sendall(piece)
                    time.sleep(answer.gap)
                time.sleep(answer.stall)
                if answer.close or answer.stall:
                    return
        except OSError:
            return


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[], Answer]], Scripted]]:
    servers: list[Scripted] = []

    def start(answer: Callable[[], Answer]) -> Scripted:
        server = Scripted(answer)
        server.sock.bind(("127.0.0.1", 0))
        server.sock.listen(8)
        accept_each(server.sock, lambda conn: _serve(server, conn))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.sock.close()


def head(length: int | None, *extra: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", *extra]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.fixture
def h11_events(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the events h11 hands httpcore (headers, then one per body read)."""
    calls: list[int] = []
    original = httpcore._sync.http11.HTTP11Connection._receive_event

    def counted(self: Any, *args: Any, **kw: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kw)

    monkeypatch.setattr(httpcore._sync.http11.HTTP11Connection, "_receive_event", counted)
    return calls


def fetch(url: str, timeout: float = 10.0) -> tuple[list[bytes], BaseException | None]:
    """The pieces :func:`body.chunks` gives, and the error it ended with (if any)."""
    got: list[bytes] = []
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response,
    ):
        try:
            for piece in body.chunks(response):
                got.append(piece)
        except httpx.TransportError as e:
            return got, e
    return got, None


def test_a_large_body_comes_straight_from_the_socket_in_whole_chunks(
    scripted: Callable[[Callable[[], Answer]], Scripted], h11_events: list[int]
) -> None:
    data = os.urandom(BIG)
    server = scripted(lambda: Answer(head(len(data)), pieces(data, 100_003)))
    got, error = fetch(server.url)
    assert error is None and b"".join(got) == data
    assert [len(p) for p in got[:-1]] == [CHUNK] * (len(got) - 1) and 0 < len(got[-1]) <= CHUNK
    assert len(h11_events) <= 3  # the headers and what came with them; the rest by recv_into


def test_a_body_below_the_threshold_goes_through_httpx_and_keeps_its_connection(
    scripted: Callable[[Callable[[], Answer]], Scripted], h11_events: list[int]
) -> None:
    data = os.urandom(body.DIRECT_MIN - 1)
    server = scripted(lambda: Answer(head(len(data)), pieces(data, 100_003)))
    with httpx.Client() as client:
        for _ in range(2):
            with client.stream("GET", server.url) as response:
                assert b"".join(body.chunks(response)) == data
    assert len(h11_events) > 20 and server.connections == 1


def test_a_direct_body_closes_its_connection(
    scripted: Callable[[Callable[[], Answer]], Scripted],
) -> None:
    """h11 never sees the end of a body read past it, so the connection cannot be reused."""
    data = os.urandom(BIG)
    server = scripted(lambda: Answer(head(len(data)), [data]))
    with httpx.Client() as client:
        for _ in range(2):
            with client.stream("GET", server.url) as response:
                assert hashlib.sha256(b"".join(body.chunks(response))).digest() == (
                    hashlib.sha256(data).digest()
                )
    assert server.connections == 2


def test_a_body_h11_already_holds_is_cut_into_chunks(
    scripted: Callable[[Callable[[], Answer]], Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers and the whole body in one write: h11's first read holds more than a chunk."""
    monkeypatch.setattr(body, "DIRECT_MIN", 0)
    data = os.urandom(5000)
    server = scripted(lambda: Answer(head(len(data)) + data, []))
    with httpx.Client() as client, client.stream("GET", server.url) as response:
        got = list(body.chunks(response, chunk=1000))
    assert got == pieces(data, 1000)


def test_a_drop_mid_body_delivers_what_arrived_then_fails_as_httpx_would(
    scripted: Callable[[Callable[[], Answer]], Scripted],
) -> None:
    data = os.urandom(BIG)
    sent = body.DIRECT_MIN + CHUNK // 2 + 7
    server = scripted(lambda: Answer(head(len(data)), pieces(data[:sent], 65536), close=True))
    got, error = fetch(server.url)
    assert isinstance(error, httpx.RemoteProtocolError)
    assert f"received {sent} bytes, expected {len(data)}" in str(error)
    assert b"".join(got) == data[:sent]


@pytest.mark.parametrize("past", [5, 0], ids=["inside a chunk", "at a chunk's start"])
def test_a_stall_mid_body_times_out_after_delivering_what_arrived(
    past: int, scripted: Callable[[Callable[[], Answer]], Scripted]
) -> None:
    data = os.urandom(BIG)
    sent = body.DIRECT_MIN + 2 * CHUNK + past
    server = scripted(lambda: Answer(head(len(data)), pieces(data[:sent], 65536), stall=4.0))
    started = time.monotonic()
    got, error = fetch(server.url, timeout=0.5)
    assert isinstance(error, httpx.ReadTimeout) and time.monotonic() - started < 2.5
    assert b"".join(got) == data[:sent]


def test_a_slow_body_that_never_pauses_for_the_timeout_is_not_a_timeout(
    scripted: Callable[[Callable[[], Answer]], Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read timeout is a pause between bytes, not a deadline for a whole chunk: a body
    trickling in for four read timeouts arrives whole and in whole chunks."""
    monkeypatch.setattr(body, "DIRECT_MIN", 0)
    data = os.urandom(CHUNK + CHUNK // 2)
    server = scripted(lambda: Answer(head(len(data)), pieces(data, 65536), gap=0.08))
    started = time.monotonic()
    got, error = fetch(server.url, timeout=0.5)
    assert error is None and b"".join(got) == data and time.monotonic() - started > 1.5
    assert [len(p) for p in got] == [CHUNK, CHUNK // 2]


@pytest.mark.parametrize("how", ["chunked", "gzip", "no length"])
def test_bodies_without_a_plain_length_go_through_httpx(
    how: str, scripted: Callable[[Callable[[], Answer]], Scripted], h11_events: list[int]
) -> None:
    data = os.urandom(BIG)
    if how == "chunked":
        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces(data, 300_000))
        answer = Answer(head(None, "Transfer-Encoding: chunked"), [framed, b"0\r\n\r\n"])
    elif how == "gzip":
        packed = gzip.compress(data, 1)
        answer = Answer(head(len(packed), "Content-Encoding: gzip"), pieces(packed, 100_003))
    else:
        answer = Answer(head(None, "Connection: close"), pieces(data, 100_003), close=True)
    server = scripted(lambda: answer)
    got, error = fetch(server.url)
    assert error is None and b"".join(got) == data
    assert len(h11_events) > 20


def test_a_large_blob_over_tls_from_the_real_registry(
    tmp_path: Path, h11_events: list[int]
) -> None:
    """distribution 2.8 over TLS: ``ssl.SSLSocket.recv_into`` decrypts; the blob verifies."""
    reg = start_registry("tls", tmp_path / "registry")
    try:
        data = os.urandom(BIG)
        digest = Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())
        tls = TLSConfig(ca_file=str(reg.ca_file))
        with RegistryClient(reg.host, tls=tls, retry=RetryPolicy(attempts=1)) as client:
            assert client.upload_blob("lab/direct", io.BytesIO(data), digest, len(data))
            h11_events.clear()
            with client.open_blob("lab/direct", digest, len(data)) as reader:
                got = list(reader.chunks())
                assert reader.verified and reader.resumes == 0
        assert b"".join(got) == data and all(len(p) == CHUNK for p in got[:-1])
        assert len(h11_events) <= 3
    finally:
        reg.stop()
