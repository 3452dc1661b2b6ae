"""Layer bytes for the copy engine: fetched lazily, verified, and resumable across runs.

:func:`open_layer` yields a reader that sends no request until the first ``read`` (so a sink
that skips or mounts the blob costs nothing) and then streams the blob through a verifying
:class:`~.blobs.BlobReader` (size, then digest; ``Range`` resume after a dropped connection).
The download (receive, hash, keep) runs in a thread of its own, a few 1 MiB chunks ahead of
the reader (:class:`~occystrap.copy_stages.Stage`), so that it overlaps with what the reader
does with the bytes (decompress, write, upload) on another core.

Cross-run resume. Every layer blob (:data:`PARTIAL_MIN`) is also written, chunk by
chunk as it streams, to ``CACHE_DIR/ALG-HEX.partial`` (held under an exclusive ``flock``, so
concurrent runs never share one; the directory is :mod:`.blobcache`'s). The file's length is
the offset: a killed process loses nothing it wrote, and Python cannot serialise a hash
state, so the hash state is rebuilt by re-reading that prefix from local disk. When a later
run finds the file it completes it first (``Range: bytes=OFFSET-``), checks size and digest
over the whole file, and only then serves it from disk; a file that fails the check (a torn
write after a crash) is discarded and the blob is streamed afresh, so a bad prefix never
reaches the output. Once the whole blob is verified the file is renamed ``ALG-HEX.blob``
(a complete entry) and kept until a job that needs the blob succeeds (or the output holds
the layer for good, see :mod:`.blobcache`), so a rerun after a job killed later reads it
from disk (under a shared ``flock``, verifying size and digest
again as it streams; an entry that fails is removed and the job fails naming it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO, cast

from ...blobio.readers import CHUNK, IterReader
from ...copy_stages import Stage
from ...errors import DigestMismatch, IntegrityError, SizeMismatch
from ...events import Stats
from ...model.digest import Digest, Hasher
from .blobcache import COMPLETE, PARTIAL, BlobCache
from .blobs import BlobReader
from .client import RegistryClient

log = logging.getLogger(__name__)

#: Every non-empty layer is kept for a rerun: a small one costs a file, not a download.
PARTIAL_MIN = 1


@contextlib.contextmanager
def open_layer(
    client: RegistryClient,
    repository: str,
    digest: Digest,
    size: int,
    cache: BlobCache,
    stats: Stats,
) -> Iterator[BinaryIO]:
    """A reader of one verified blob (see the module docstring for the resume rules)."""
    cache.note(digest)
    fetch = _Fetch(client, repository, digest, size, cache, stats)
    reader = IterReader(Stage(fetch.chunks(), "layer-fetch"))
    ok = False
    try:
        yield cast(BinaryIO, reader)
        ok = True
    finally:
        reader.close()
        fetch.finish(ok)


class _Fetch:
    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        digest: Digest,
        size: int,
        cache: BlobCache,
        stats: Stats,
    ) -> None:
        self.client, self.repository, self.digest, self.size = client, repository, digest, size
        self.cache = cache
        self.what = f"blob {client.host}/{repository}@{digest}"
        self.stats = stats
        self.path: Path | None = None
        self.entry: Path | None = None
        if size >= PARTIAL_MIN:
            self.path = cache.path(digest, PARTIAL)
            self.entry = cache.path(digest, COMPLETE)
        self.file: IO[bytes] | None = None
        self.served: IO[bytes] | None = None  # the complete entry being served
        self.complete = False
        self.bad = False

    # -- the bytes ------------------------------------------------------------------------

    def chunks(self) -> Iterator[bytes]:
        # A copy this source fetched and verified itself moments ago (read ahead) is not
        # hashed again; one an earlier run kept is (a crash may have torn it).
        fresh = self.cache.kept_here(self.digest)
        self.served = self._open_entry(fresh)
        if self.served is not None:
            yield from self._from_disk(self.served, "kept complete blob", rehash=not fresh)
            self.complete = True
            return
        self.file = self._claim()
        if self.file is not None:
            offset = os.fstat(self.file.fileno()).st_size
            if offset > self.size:
                offset = self._restart("is longer than the blob")
            if offset:
                try:
                    self._complete(offset)
                except IntegrityError as e:
                    offset = self._restart(f"failed its check ({e})")
                else:
                    yield from self._from_disk(self.file, "partial file")
                    self.complete = True
                    return
        with self.client.open_blob(self.repository, self.digest, self.size) as blob:
            try:
                for chunk in blob.chunks():
                    self.stats.add(bytes_read=len(chunk))
                    self._keep(chunk)
                    yield chunk
            except IntegrityError:
                self.bad = True
                raise
        self.complete = True

    def _complete(self, offset: int) -> None:
        """Fetch what an earlier run did not, appending to the file; verify the whole blob."""
        assert self.file is not None
        hasher = Hasher(self.digest.algorithm)
        self.file.seek(0)
        left = offset
        while left:
            chunk = self.file.read(min(CHUNK, left))
            if not chunk:
                raise SizeMismatch(f"{self.what} (partial file)", offset, offset - left)
            hasher.update(chunk)
            left -= len(chunk)
        log.info(
            "%s: resuming at byte %d of %d (kept by an earlier run)", self.what, offset, self.size
        )
        if offset == self.size:
            if hasher.digest() != self.digest:
                raise DigestMismatch(self.what, str(self.digest), str(hasher.digest()))
            return
        with BlobReader(
            self.client, self.repository, self.digest, self.size, start=offset, hasher=hasher
        ) as blob:
            for chunk in blob.chunks():
                self.stats.add(bytes_read=len(chunk))
                self.file.write(chunk)
                self.file.flush()

    def _from_disk(self, f: IO[bytes], kind: str, rehash: bool = True) -> Iterator[bytes]:
        f.seek(0)
        hasher = Hasher(self.digest.algorithm)
        size = 0
        while chunk := f.read(CHUNK):
            if rehash:
                hasher.update(chunk)
            size += len(chunk)
            yield chunk
        if size != self.size:
            self.bad = True
            raise SizeMismatch(f"{self.what} ({kind})", self.size, size)
        if rehash and hasher.digest() != self.digest:
            self.bad = True
            raise DigestMismatch(f"{self.what} ({kind})", str(self.digest), str(hasher.digest()))

    def _open_entry(self, fresh: bool) -> IO[bytes] | None:
        """The complete entry kept (by an earlier run, or ``fresh`` by this source), opened
        and share-locked; else None."""
        if self.entry is None:
            return None
        try:
            f = open(self.entry, "rb")  # closed in finish()
        except OSError:
            return None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            st = os.fstat(f.fileno())
            if st.st_ino != os.stat(self.entry).st_ino:
                raise BlockingIOError(errno.EAGAIN, "replaced")
            os.utime(f.fileno())  # recently used: the sweep removes the oldest first
        except OSError:
            f.close()
            return None
        if fresh:
            log.debug("%s: reading the complete copy fetched ahead", self.what)
        else:
            log.info("%s: reading the complete copy an earlier run kept", self.what)
        return f

    # -- the partial file -------------------------------------------------------------------

    def _claim(self) -> IO[bytes] | None:
        """Open and lock the partial file; None when resume is off or another run holds it."""
        if self.path is None:
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+b")  # closed in finish()
        except OSError as e:
            log.warning(
                "cannot keep a partial download in %s: %s", self.path.parent, e.strerror or e
            )
            return None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(f.fileno()).st_ino != os.stat(self.path).st_ino:
                raise BlockingIOError(errno.EAGAIN, "replaced")  # another run finished it
        except OSError:
            f.close()
            log.debug("%s: another run is fetching it; not keeping a partial file", self.what)
            return None
        return f

    def _restart(self, why: str) -> int:
        assert self.file is not None
        log.warning("%s: the partial file of an earlier run %s; fetching it again", self.what, why)
        self.file.truncate(0)
        return 0

    def _keep(self, chunk: bytes) -> None:
        if self.file is None:
            return
        try:
            self.file.write(chunk)
            self.file.flush()
        except OSError as e:
            log.warning("%s: cannot keep a partial download: %s", self.what, e.strerror or e)
            self._drop()

    def _drop(self) -> None:
        if self.file is not None and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.file.close()
            self.file = None

    def _promote(self) -> None:
        """Rename the verified partial file to the complete entry (kept for a rerun)."""
        assert self.file is not None and self.path is not None and self.entry is not None
        try:
            os.utime(self.file.fileno())
            os.replace(self.path, self.entry)
            self.cache.keep_here(self.digest)
        except OSError as e:
            log.warning("%s: cannot keep the complete blob: %s", self.what, e.strerror or e)
            self._drop()
            return
        self.file.close()
        self.file = None

    def finish(self, consumer_ok: bool) -> None:
        """Keep a verified blob as a complete entry, drop a bad file; release the files."""
        if self.served is not None:
            if self.bad and self.entry is not None:
                with contextlib.suppress(OSError):
                    self.entry.unlink()
            self.served.close()
            self.served = None
        if self.file is None:
            return
        if self.bad:
            self._drop()
        elif self.complete:
            self._promote()
        else:
            self.file.close()
            self.file = None
