"""Recording: how the copy engine fills the cache with one layer while producing it.

Use it as the outermost ``with`` of a layer's work, so it decides after every thread that
read the layer has stopped::

    with cache.record(key) as rec:
        stored = rec.watch_stored(stored)       # the source's stored bytes
        plain = rec.watch_plain(plain)          # the uncompressed tar
        sink.put_layer(rec.tee(output), ...)    # what the sink reads is recorded
        rec.done(diff_id=..., compression=..., unchanged=..., outcome=..., expect=...)

The entry is published at the end of the block only when the block did not raise, ``done``
(or ``passthrough``) was called, the recorded output was read to its end, and the source
bytes were what the key names: for a key on the stored digest, the stored stream was read to
its end (sources verify their bytes against the descriptor before reporting the end); for a
key on a diff_id, the tar read hashed to it. Otherwise nothing is left behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ..blobio.readers import Reader, ReaderBase, drain
from ..blobio.verify import HashingReader
from ..model.digest import Digest
from .key import CacheKey

if TYPE_CHECKING:
    from .pending import Pending
    from .store import LayerCache

log = logging.getLogger(__name__)


class _EndWatcher(ReaderBase):
    """Notes whether the stream was read to its end."""

    def __init__(self, reader: Reader) -> None:
        self._source = reader
        self.eof = False

    def read(self, size: int = -1, /) -> bytes:
        assert self._source is not None
        data = self._source.read(size)
        if not data and size != 0:
            self.eof = True
        return data

    def close(self) -> None:
        self.closed = True  # the stream belongs to the engine


@dataclass(frozen=True)
class _Result:
    diff_id: Digest | None
    compression: str
    unchanged: bool
    outcome: str
    expect: Digest | None
    passthrough: bool = False


class Recording:
    """See the module docstring. Without a cache or key (or with an unwritable cache) every
    method passes its argument through and nothing is recorded."""

    def __init__(self, cache: LayerCache | None, key: CacheKey | None) -> None:
        self.key = key
        self.pending: Pending | None = None
        if cache is not None and key is not None:
            self.pending = cache.begin(key)
        self._end: _EndWatcher | None = None
        self._hash: HashingReader | None = None
        self._result: _Result | None = None

    def watch_stored(self, stream: Any) -> Any:
        """The stored bytes of the layer (checked when the key is on the stored digest)."""
        key = self.key
        if self.pending is None or key is None or key.source_kind != "digest" or self._end:
            return stream
        self._end = _EndWatcher(stream)
        return self._end

    def watch_plain(self, stream: Any) -> Any:
        """The layer's uncompressed tar (hashed when the key is on the diff_id)."""
        key = self.key
        if self.pending is None or key is None or key.source_kind != "diff_id" or self._hash:
            return stream
        self._hash = HashingReader(stream, key.source.algorithm)
        return self._hash

    def tee(self, reader: Any) -> Any:
        """``reader``, its bytes also recorded as they are read."""
        return reader if self.pending is None else self.pending.tee(reader)

    def copy_from(self, reader: Reader) -> None:
        """Record all of ``reader`` (output the sink did not need to read: it had it)."""
        if self.pending is not None:
            drain(self.pending.tee(reader))

    def done(
        self,
        *,
        diff_id: Digest | None,
        compression: str,
        unchanged: bool,
        outcome: str,
        expect: Digest | None,
    ) -> None:
        """The output was produced; publish it at the end of the block."""
        self._result = _Result(diff_id, compression, unchanged, outcome, expect)

    def passthrough(self, diff_id: Digest | None) -> None:
        """The chain left this layer unchanged: remember that, with no blob."""
        self._result = _Result(diff_id, "", True, "passthrough", None, passthrough=True)

    def _source_ok(self) -> bool:
        if self._end is not None:
            return self._end.eof
        if self._hash is not None and self.key is not None:
            return self._hash.eof and self._hash.digest() == self.key.source
        return False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pending, result = self.pending, self._result
        if pending is None:
            return
        try:
            if exc_type is not None or result is None:
                return
            if not self._source_ok():
                what = self.key.source if self.key else "layer"
                log.info(
                    "layer cache: %s not cached (source not read whole, or not as keyed)", what
                )
                return
            if result.passthrough:
                pending.commit_passthrough(result.diff_id)
            else:
                pending.commit(
                    diff_id=result.diff_id,
                    compression=result.compression,
                    unchanged=result.unchanged,
                    outcome=result.outcome,
                    expect=result.expect,
                )
        finally:
            pending.discard()
