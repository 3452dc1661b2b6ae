"""observe_copy(): let a consumer thread read a copy of a stream while the caller reads it.

The caller's reads are forwarded unchanged; every chunk is also queued (bounded, so memory
stays at a few chunks) for ``consumer``, which runs in its own thread on a reader over
that queue. On exit the consumer sees EOF, is joined, and its exception (if any) is raised.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

_EOF = b""
_QUEUE_CHUNKS = 8


class _QueueReader:
    def __init__(self, q: queue.Queue[bytes]) -> None:
        self._q = q
        self._buf = b""
        self._eof = False

    def read(self, n: int = -1, /) -> bytes:
        if n is None or n < 0:
            parts = [self._buf]
            self._buf = b""
            while not self._eof:
                chunk = self._q.get()
                if chunk is _EOF or chunk == b"":
                    self._eof = True
                else:
                    parts.append(chunk)
            return b"".join(parts)
        while not self._buf and not self._eof:
            chunk = self._q.get()
            if chunk == b"":
                self._eof = True
            else:
                self._buf = chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def drain(self) -> None:
        while not self._eof:
            if self._q.get() == b"":
                self._eof = True


class _TapReader:
    def __init__(self, inner: BinaryIO, tap: Tap) -> None:
        self._inner = inner
        self._tap = tap

    def read(self, n: int = -1, /) -> bytes:
        data = self._inner.read(n)
        if data:
            self._tap.feed(bytes(data))
        return data

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        count = self._inner.readinto(buffer)  # type: ignore[attr-defined]
        if count:
            self._tap.feed(bytes(memoryview(buffer)[:count]))
        return int(count or 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Tap:
    def __init__(self, consumer: Callable[[BinaryIO], None]) -> None:
        self._q: queue.Queue[bytes] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._reader = _QueueReader(self._q)
        self._error: BaseException | None = None
        self._consumer = consumer
        self.used = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._consumer(self._reader)  # type: ignore[arg-type]
        except BaseException as e:  # re-raised in the caller's thread
            self._error = e
        finally:
            self._reader.drain()

    def wrap(self, stream: BinaryIO) -> BinaryIO:
        if self.used:
            raise RuntimeError("a tap observes one stream")
        self.used = True
        return _TapReader(stream, self)  # type: ignore[return-value]

    def feed(self, chunk: bytes) -> None:
        if self._error is None:
            self._q.put(chunk)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._q.put(_EOF)
            self._thread.join()

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error


@contextmanager
def observe_copy(consumer: Callable[[BinaryIO], None]) -> Iterator[Tap]:
    tap = Tap(consumer)
    try:
        yield tap
    except BaseException:
        tap.close()
        raise
    tap.close()
    tap.raise_error()
