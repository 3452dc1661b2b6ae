"""The threads a layer's work is spread over by the copy engine (:mod:`occystrap.copy`).

A layer's work is a chain: read the stored bytes (the source verifies them), decompress,
parse and filter tar entries, serialise, hash, compress, write. Hashing, (de)compression
and file I/O release the GIL, so :class:`Stage` runs a part of the chain in its own thread
and hands its 1 MiB chunks on through a small bounded queue (memory stays at a few chunks
per stage). Stages nest: each reads the previous one's output.

:func:`pack` is the end of a rewritten layer bound for a registry or a layout: it hashes
the uncompressed stream (the diff_id), compresses it, hashes the result (the digest) and
spools only the compressed bytes, all in one pass, so the sink gets a blob whose digest
and size are known before it sends a byte. :class:`KnownBlob` hands on bytes whose digest
is already known (verified by the source, or our own spool) without hashing them again.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from .blobio.readers import CHUNK, Reader, ReaderBase, read_chunk
from .closing import Closing
from .model.digest import Digest

if TYPE_CHECKING:
    from .blobio.spool import SpooledBlob
    from .image import Layer

log = logging.getLogger(__name__)

DEPTH = 2  # chunks queued between two stages (more saves no time, only memory)
_END = object()


class Stage(Closing):
    """Iterate ``chunks`` in a thread of its own; iterate the stage to get them here.

    The thread starts at the first ``next()``. An exception in the thread is raised here,
    after the chunks produced before it. ``close()`` (or leaving the ``with`` block) stops the thread after its current chunk
    and waits for it, so what it reads may be closed afterwards.
    """

    def __init__(self, chunks: Iterable[bytes], name: str, depth: int = DEPTH) -> None:
        self._chunks = chunks
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = False
        self._error: BaseException | None = None
        self._done = False
        self._started = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        put, chunks = self._q.put, self._chunks
        try:
            for chunk in chunks:
                if chunk:
                    put(chunk)
                if self._stop:
                    return
        except BaseException as e:  # handed to the consumer
            self._error = e
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # the first error matters more
                    log.debug("closing a stage's input failed", exc_info=True)
            if not self._stop:
                put(_END)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        if not self._started:  # nothing is read before someone asks
            self._started = True
            self._thread.start()
        item = self._q.get()
        if item is _END:
            self._done = True
            self._thread.join()
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            raise StopIteration
        chunk: bytes = item
        return chunk

    def close(self) -> None:
        """Stop the thread (it finishes the chunk it is making) and wait for it."""
        self._done = True
        if not self._started:
            self._started = True
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            return
        if not self._thread.is_alive():
            return
        self._stop = True
        while self._thread.is_alive():
            try:
                self._q.get(timeout=0.05)  # unblock a put
            except queue.Empty:
                pass
        self._thread.join()


def chunks_of(reader: Reader, hasher: Any = None) -> Iterator[bytes]:
    """``reader``'s bytes in chunks of up to 1 MiB, fed to ``hasher`` on the way if given."""
    read = reader.read
    while data := read(CHUNK):
        if hasher is not None:
            hasher.update(data)
        yield data


def hashed(chunks: Iterable[bytes], hasher: Any) -> Iterator[bytes]:
    """``chunks`` unchanged, fed to ``hasher`` on the way."""
    update = hasher.update
    for chunk in chunks:
        update(chunk)
        yield chunk


def compressed(chunks: Iterable[bytes], compression: str, level: int | None) -> Iterator[bytes]:
    """The compressed form of ``chunks`` (deterministic, see :mod:`occystrap.blobio.compress`)."""
    from .blobio.compress import make_compressor  # the compressors load when a route needs one

    compressor = make_compressor(compression, level)
    compress = compressor.compress
    for chunk in chunks:
        if out := compress(chunk):
            yield out
    yield compressor.flush()


class KnownBlob(ReaderBase):
    """A blob stream whose digest is already known: bytes are counted, never hashed again.

    Only for bytes verified while they stream (a source's verified layer: its check raises
    before the end is reported) or written by us (a spool).
    """

    def __init__(self, reader: Reader, digest: Digest) -> None:
        self._source = reader
        self._digest = digest
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        assert self._source is not None
        data = self._source.read(size)
        self.size += len(data)
        return data

    def read_chunk(self) -> bytes:
        assert self._source is not None
        data = read_chunk(self._source)
        self.size += len(data)
        return data

    def digest(self) -> Digest:
        return self._digest


@dataclass
class Packed(Closing):
    """A compressed layer spooled to disk: ``blob`` has the digest and size of the
    compressed bytes; ``diff_id`` and ``plain_size`` describe the uncompressed tar."""

    blob: SpooledBlob
    diff_id: Digest
    plain_size: int

    def close(self) -> None:
        self.blob.close()


def pack(
    chunks: Iterable[bytes],
    compression: str,
    level: int | None,
    temp_dir: str | None,
    plain: Any = None,
) -> Packed:
    """Hash ``chunks`` (the diff_id), compress them, hash and spool the compressed bytes.

    One pass: every byte is hashed once per digest. ``plain``: a sha256 hasher the chunks
    were already fed to on their way (in another thread, see :func:`hashed`); None:
    they are hashed here. The temporary file is created in ``temp_dir`` and removed if
    anything fails.
    """
    from .blobio.compress import make_compressor  # loaded by the routes that pack
    from .blobio.spool import SpooledBlob, SpoolFile

    compressor = make_compressor(compression, level)
    hash_here = plain is None
    if plain is None:
        plain = hashlib.sha256()
    packed = hashlib.sha256()
    plain_size = size = 0
    tmp = SpoolFile(temp_dir)
    compress = compressor.compress
    try:
        for chunk in chunks:
            if hash_here:
                plain.update(chunk)
            plain_size += len(chunk)
            out = compress(chunk)
            if out:
                packed.update(out)
                size += len(out)
                tmp.write(out)
        out = compressor.flush()
        packed.update(out)
        size += len(out)
        tmp.write(out)
    except BaseException:
        tmp.close()
        raise
    blob = SpooledBlob(tmp, Digest("sha256", packed.hexdigest()), size)
    return Packed(blob, Digest("sha256", plain.hexdigest()), plain_size)


class Prefetch(Closing):
    """Read ``layers`` to their end ahead of their turn, in up to ``workers`` threads, in
    order; the bytes are discarded here (the source keeps them, see ``Layer.local_copy``).

    :meth:`wait_for` blocks until a layer's read-ahead is over, so that its turn opens the
    kept copy and not a second download. A read-ahead that fails is only logged: the turn
    opens the layer again and reports the error itself. ``close()`` stops the read-aheads
    after their current chunk. It waits for them only briefly (:data:`CLOSE_WAIT`): a
    read-ahead blocked on a stalled server must not hold up an error or a Ctrl-C. The
    threads are daemons, so such a read never holds up the process's exit either.
    """

    CLOSE_WAIT = 1.0  # seconds close() waits for the read-aheads to stop

    def __init__(self, layers: Sequence[Layer], workers: int) -> None:
        self._stop = threading.Event()
        self._done: dict[int, threading.Event] = {
            layer.index: threading.Event() for layer in layers
        }
        self._todo: queue.SimpleQueue[Layer | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        if not layers or workers <= 0:
            self._done.clear()
            return
        for layer in layers:
            self._todo.put(layer)
        for i in range(min(workers, len(layers))):
            self._todo.put(None)
            thread = threading.Thread(target=self._run, name=f"prefetch-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self) -> None:
        while (layer := self._todo.get()) is not None:
            done = self._done[layer.index]
            try:
                if not self._stop.is_set():
                    self._read(layer)
            finally:
                done.set()

    def _read(self, layer: Layer) -> None:
        try:
            with layer.open() as stream:
                while not self._stop.is_set() and stream.read(CHUNK):
                    pass
        except Exception as e:  # the layer's turn opens it again and raises
            log.debug("reading layer %d ahead failed: %s", layer.index, e)

    def wait_for(self, layer: Layer) -> None:
        done = self._done.get(layer.index)
        if done is not None:
            done.wait()

    def close(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + self.CLOSE_WAIT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
