"""Large response bodies read straight from the socket, in whole chunks.

httpx hands a body up through httpcore and h11. Every socket read is appended to h11's
buffer, sliced out of it, copied into ``bytes`` by httpcore, then cut and joined again into
1 MiB chunks by the blob reader: four copies and a dozen Python calls per read. For a body
of known length on an HTTP/1.x connection, :func:`chunks` takes what h11 already holds (its
first ``Data`` event takes everything buffered), then reads the rest a chunk at a time:

* on a plain TCP socket, one blocking ``recv(chunk, MSG_WAITALL)`` per chunk: one system
  call, and the ``bytes`` the kernel filled are handed on as they are (one copy);
* over TLS (which takes no flags), ``recv_into`` one reused buffer, then ``bytes`` of it.

On the benchmark corpus (353 MB of layers) a pull into an OCI layout went from 0.68-0.74 s
to 0.52-0.54 s with the buffer. ``MSG_WAITALL`` saves one copy per chunk and the ``poll``
Python makes before each read on a socket with a timeout (390 polls to 24): 15-30 ms of
CPU time per pull, which is within the noise of the wall time (docs/performance.md).

h11 never sees the end of such a body, so its connection is not reused: closing the response
closes it. That costs a new connection per large blob, which is why only bodies of at least
:data:`DIRECT_MIN` bytes take this path. Everything else (HTTP/2, chunked or
content-encoded bodies, TLS carried inside another TLS stream, transports without a socket)
keeps httpx's own iteration.

Failures keep httpx's types (``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``), so the
callers' retry and ``Range`` resume rules apply unchanged; the bytes received before a
failure are delivered first. On a plain socket the read timeout is the kernel's
``SO_RCVTIMEO``: a stall is noticed after one to two timeouts, and a slow body that never
pauses that long is not cut off.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Callable, Iterator

import httpx

CHUNK = 1 << 20
#: Bodies at least this long are read straight from the socket.
DIRECT_MIN = 8 << 20


def chunks(response: httpx.Response, chunk: int = CHUNK) -> Iterator[bytes]:
    """The body of ``response`` as it arrives. Straight from the socket it comes in pieces
    of exactly ``chunk`` bytes (the last may be shorter); otherwise as httpx decodes it."""
    length = _direct_length(response)
    sock = _socket(response) if length is not None else None
    if length is None or sock is None:
        yield from response.iter_bytes()
        return
    yield from _direct(response, sock, length, chunk)


def _direct_length(response: httpx.Response) -> int | None:
    """The body's length when it may be read from the socket, else None."""
    if response.http_version not in ("HTTP/1.1", "HTTP/1.0") or response.is_stream_consumed:
        return None
    if response.request.method == "HEAD" or not 200 <= response.status_code < 300:
        return None
    headers = response.headers
    if "transfer-encoding" in headers:
        return None
    if headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        return None
    value = headers.get("content-length", "")
    if not (value.isascii() and value.isdigit()):
        return None
    length = int(value)
    return length if length >= DIRECT_MIN else None


def _socket(response: httpx.Response) -> socket.socket | None:
    """The socket that carries the body in clear (or decrypts it itself), else None."""
    extra = getattr(response.extensions.get("network_stream"), "get_extra_info", None)
    if extra is None:
        return None
    sock = extra("socket")
    if not isinstance(sock, socket.socket):
        return None
    if extra("ssl_object") is not None and not isinstance(sock, ssl.SSLSocket):
        return None  # TLS inside the stream (through an HTTPS proxy): the socket has ciphertext
    return sock


def _direct(
    response: httpx.Response, sock: socket.socket, length: int, chunk: int
) -> Iterator[bytes]:
    raw = response.iter_raw()  # kept open: closing it would close the connection
    held = memoryview(next(raw, b""))  # what h11 had buffered: the body's first bytes
    received = len(held)
    while len(held) >= chunk:  # h11 held more than a chunk (a larger read size)
        yield bytes(held[:chunk])
        held = held[chunk:]
    try:
        fill = _filler(sock, response.request.extensions.get("timeout", {}).get("read"))
    except OSError as e:
        raise _transport_error(e, response.request) from e
    while True:
        want = min(chunk - len(held), length - received)
        try:
            data = fill(want) if want > 0 else b""
        except _Short as short:
            received += len(short.data)
            if held or short.data:
                yield bytes(held) + short.data
            if isinstance(short.cause, OSError):
                raise _transport_error(short.cause, response.request) from short.cause
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                f"(received {received} bytes, expected {length})",
                request=response.request,
            ) from None
        received += len(data)
        if held:
            data = bytes(held) + data
            held = held[:0]
        if data:
            yield data
        if received >= length:
            return


class _Short(Exception):
    """A fill that ended early: the bytes it got, and why (an ``OSError``, or None for the
    peer closing the connection)."""

    def __init__(self, data: bytes, cause: OSError | None) -> None:
        super().__init__("short read")
        self.data = data
        self.cause = cause


def _filler(sock: socket.socket, timeout: float | None) -> Callable[[int], bytes]:
    """A function that reads exactly ``n`` bytes from ``sock`` (or raises :class:`_Short`).

    On a plain TCP socket one blocking ``recv(n, MSG_WAITALL)`` hands back the kernel's bytes
    in a new ``bytes`` object, with no copy of ours. The socket is switched to blocking with
    the read timeout as ``SO_RCVTIMEO``: the kernel returns what arrived when the timeout
    expires, and an error when nothing did, so a stall is noticed after one to two timeouts.
    The connection is closed after such a body, so the changed socket is never reused.
    TLS sockets take no flags: they fill a reused buffer with ``recv_into``.
    """
    if isinstance(sock, ssl.SSLSocket):
        return _buffered(sock, timeout)
    sock.settimeout(None)
    if timeout is not None:
        seconds = max(timeout, 0.001)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_RCVTIMEO,
            struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000)),
        )

    def fill(n: int) -> bytes:
        data = b""
        try:
            while len(data) < n:
                piece = sock.recv(n - len(data), socket.MSG_WAITALL)
                if not piece:
                    raise _Short(data, None)
                data = piece if not data else data + piece
        except BlockingIOError as e:  # SO_RCVTIMEO expired with nothing received
            raise _Short(data, TimeoutError("timed out")) from e
        except OSError as e:
            raise _Short(data, e) from e
        return data

    return fill


def _buffered(sock: socket.socket, timeout: float | None) -> Callable[[int], bytes]:
    sock.settimeout(timeout)
    view = memoryview(bytearray(CHUNK))

    def fill(n: int) -> bytes:
        nonlocal view
        if len(view) < n:
            view = memoryview(bytearray(n))
        filled = 0
        try:
            while filled < n:
                got = sock.recv_into(view[filled:n])
                if not got:
                    raise _Short(bytes(view[:filled]), None)
                filled += got
        except OSError as e:
            raise _Short(bytes(view[:filled]), e) from e
        return bytes(view[:n])

    return fill


def _transport_error(error: OSError, request: httpx.Request) -> httpx.TransportError:
    if isinstance(error, TimeoutError):
        return httpx.ReadTimeout(str(error) or "timed out", request=request)
    return httpx.ReadError(str(error) or type(error).__name__, request=request)


__all__ = ["CHUNK", "DIRECT_MIN", "chunks"]
