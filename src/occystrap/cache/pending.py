"""A cache hit (an entry with its blob open) and a pending insert (a tee into ``tmp/``).

:class:`Pending` copies every chunk the sink reads into a temporary file, hashing it. Only
when the stream was read to its end and checks out does :meth:`Pending.commit` publish it;
anything else (an error, an early stop, a write failure of the cache disk) leaves nothing
behind, and the run goes on as if there were no cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Self

from ..blobio.readers import CHUNK, ReaderBase
from ..closing import Closing
from ..model.digest import Digest
from .entry import Entry
from .key import CacheKey
from .locking import hold

if TYPE_CHECKING:
    from .store import LayerCache

log = logging.getLogger(__name__)


class Hit(Closing):
    """A usable entry; ``blob`` is open (None for a passthrough entry). Close when done."""

    def __init__(self, entry: Entry, blob: BinaryIO | None) -> None:
        self.entry = entry
        self.blob = blob

    def close(self) -> None:
        if self.blob is not None:
            self.blob.close()


class _Tee(ReaderBase):
    """Reads through to ``reader``, recording; ``digest()`` and ``size`` are the wrapped
    blob stream's, so a sink sees the same BlobStream it would have without the cache."""

    def __init__(self, reader: Any, pending: Pending) -> None:
        self._source = reader
        self._blob = reader
        self._pending = pending

    def read(self, size: int = -1, /) -> bytes:
        assert self._source is not None
        data = self._source.read(size)
        self._pending.feed(data, size)
        return data

    @property
    def size(self) -> int:
        n: int = self._blob.size
        return n

    def digest(self) -> Digest:
        d: Digest = self._blob.digest()
        return d

    def close(self) -> None:
        self.closed = True  # the wrapped stream belongs to the engine


class Pending:
    """The output for ``key`` being recorded; see the module docstring."""

    def __init__(self, cache: LayerCache, key: CacheKey, fd: int, tmp: str) -> None:
        self.cache = cache
        self.key = key
        self.tmp: str | None = tmp
        self._file: IO[bytes] | None = os.fdopen(fd, "wb", buffering=CHUNK)
        self._hash: Any = hashlib.sha256()
        self.size = 0
        self.eof = False
        self.broken = False
        hold(fd)  # a pruner leaves a file alone while its writer holds it

    def tee(self, reader: Any) -> Any:
        """``reader``'s bytes, also recorded here as they are read."""
        return _Tee(reader, self)

    def feed(self, data: bytes, size: int) -> None:
        if data:
            self._hash.update(data)
            self.size += len(data)
            if not self.broken and self._file is not None:
                try:
                    self._file.write(data)
                except OSError as e:
                    self._fail(f"cannot write {self.tmp}: {e.strerror}")
        elif size != 0:
            self.eof = True

    def _fail(self, why: str) -> None:
        if not self.broken:
            log.warning("layer cache: not caching this layer: %s", why)
        self.broken = True

    def commit(
        self,
        *,
        diff_id: Digest | None,
        compression: str,
        unchanged: bool,
        outcome: str,
        expect: Digest | None = None,
    ) -> Entry | None:
        """Publish what was recorded, when complete and (with ``expect``) matching."""
        digest = Digest("sha256", self._hash.hexdigest())
        if not self.eof or self.broken:
            self.discard()
            return None
        if expect is not None and expect != digest:
            log.warning("layer cache: output digest %s is not %s; not cached", digest, expect)
            self.discard()
            return None
        if self.size > self.cache.max_size:
            log.info("layer cache: a %d-byte layer exceeds the cache size; not cached", self.size)
            self.discard()
            return None
        entry = Entry(
            self.key.id,
            self.key.as_json(),
            digest,
            self.size,
            diff_id,
            compression,
            unchanged,
            outcome,
            time.time(),
        )
        return self._publish(entry)

    def commit_passthrough(self, diff_id: Digest | None) -> Entry | None:
        """Record that the chain leaves this layer as the source stores it (no blob)."""
        entry = Entry(
            self.key.id, self.key.as_json(), None, 0, diff_id, "", True, "passthrough", time.time()
        )
        return self._publish(entry, with_blob=False)

    def _publish(self, entry: Entry, with_blob: bool = True) -> Entry | None:
        assert self._file is not None
        try:
            self._file.flush()
            if with_blob:
                os.fsync(self._file.fileno())
            self.cache.publish(entry, self.tmp if with_blob else None)
        except OSError as e:
            self._fail(f"cannot store the entry: {e.strerror}")
            self.discard()
            return None
        if with_blob:
            self.tmp = None  # renamed into blobs/ (or dropped as a duplicate)
        self.discard()
        self.cache.enforce()
        return entry

    def discard(self) -> None:
        """Forget the recording (idempotent)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
            self.tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()
