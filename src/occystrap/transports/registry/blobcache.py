"""The cross-run download cache of registry sources: partial and complete blobs on disk.

The directory (``RegistrySettings.partial_dir``, default ``$XDG_CACHE_HOME/occystrap/partial``)
holds ``ALG-HEX.partial``, a download in progress or cut short (see :mod:`.fetch`), and
``ALG-HEX.blob``, a complete blob whose size and digest were verified when it was fetched (and
are verified again whenever it is served). A complete blob is kept so that a rerun of a job
that failed or was killed after fetching it reads it from disk instead of the network.

Bounds. When a job succeeds (its source is closed without an error) the files of every blob
that job needed are removed (:meth:`BlobCache.clean`); those of a layer the output holds for
good (a directory, a layout or a registry: a rerun skips that layer) go as soon as it does
(:meth:`BlobCache.forget`, ``Layer.drop_local_copy``). When a source opens, files untouched
for :data:`MAX_AGE` seconds are removed, then the oldest ones until the directory holds at
most :data:`MAX_BYTES` (:meth:`BlobCache.sweep`). A file another run is using is locked by it
(``flock``: exclusive while written, shared while served) and is never removed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from pathlib import Path

from ...filelocks import remove_unlocked
from ...model.digest import Digest

log = logging.getLogger(__name__)

PARTIAL = ".partial"
COMPLETE = ".blob"
#: Files untouched for this long are removed by the next source that opens.
MAX_AGE = 7 * 86400
#: The most bytes the directory keeps; the oldest files go first beyond it.
MAX_BYTES = 8 << 30


class BlobCache:
    """The cache directory as one source uses it (``root`` None: no cache at all)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._needed: set[Digest] = set()
        self._here: set[Digest] = set()  # completed by this source (not an earlier run)
        self._lock = threading.Lock()

    def path(self, digest: Digest, suffix: str) -> Path | None:
        if self.root is None or not digest.supported:
            return None
        return self.root / f"{digest.algorithm}-{digest.encoded}{suffix}"

    def complete(self, digest: Digest) -> str | None:
        """The path of the complete, verified copy of ``digest`` kept here, if there is one."""
        path = self.path(digest, COMPLETE)
        return str(path) if path is not None and path.is_file() else None

    def keep_here(self, digest: Digest) -> None:
        """``digest``'s complete copy was fetched and verified by this source."""
        with self._lock:
            self._here.add(digest)

    def prepare(self) -> None:
        """Create the directory. Where that fails, or it is not writable, the cache is off
        for this source, with one warning: no layer is read ahead only to be fetched again
        in its turn (``Layer.local_copy``)."""
        if self.root is None:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "not writable")
        except OSError as e:
            log.warning(
                "downloads are not kept for a rerun: cannot use %s: %s",
                self.root,
                e.strerror or e,
            )
            self.root = None

    def kept_here(self, digest: Digest) -> bool:
        with self._lock:
            return digest in self._here

    def note(self, digest: Digest) -> None:
        """``digest`` is needed by this job: :meth:`clean` removes its files."""
        with self._lock:
            self._needed.add(digest)

    def clean(self) -> int:
        """The job succeeded: remove the files of the blobs it needed; how many went."""
        with self._lock:
            needed, self._needed = list(self._needed), set()
        return sum(self._remove(digest) for digest in needed)

    def forget(self, digest: Digest) -> None:
        """A rerun will not need ``digest``: remove its files now (those nobody holds)."""
        with self._lock:
            self._needed.discard(digest)
            self._here.discard(digest)
        if self._remove(digest):
            log.debug("removed %s from the download cache: the output holds it", digest)

    def _remove(self, digest: Digest) -> int:
        removed = 0
        for suffix in (COMPLETE, PARTIAL):
            path = self.path(digest, suffix)
            if path is not None and remove_unlocked(path):
                removed += 1
        return removed

    def sweep(self, now: float | None = None) -> int:
        """Remove old files, then the oldest ones beyond :data:`MAX_BYTES`; how many went."""
        if self.root is None:
            return 0
        try:
            names = os.listdir(self.root)
        except OSError:
            return 0
        now = time.time() if now is None else now
        files: list[tuple[float, int, Path]] = []
        for name in names:
            if not name.endswith((PARTIAL, COMPLETE)):
                continue
            path = self.root / name
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode):
                    files.append((st.st_mtime, st.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        removed = 0
        for mtime, size, path in files:
            if (now - mtime > MAX_AGE or total > MAX_BYTES) and remove_unlocked(path):
                log.debug("removed %s from the download cache", path.name)
                total -= size
                removed += 1
        return removed


__all__ = ["COMPLETE", "MAX_AGE", "MAX_BYTES", "PARTIAL", "BlobCache"]
