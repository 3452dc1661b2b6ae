"""LayerCache: a directory of cached output layers, safe for concurrent processes.

Layout of ``DIR``::

    CACHEDIR.TAG            marks the directory as a cache (backup tools skip it)
    lock                    flock: shared to look up / publish, exclusive to evict
    entries/<key id>.json   one per cached layer (:mod:`.entry`); mtime = last use
    blobs/sha256/<hex>      the output blobs, content-addressed, shared between entries
    tmp/                    blobs being written (each held under its writer's flock)

Writers never expose a partial file: a blob is written under ``tmp/``, checked, fsynced and
renamed into ``blobs/``, then the entry is written the same way, both under the shared lock,
so an evictor (exclusive lock) never sees a blob whose entry is still to come. Readers open
the blob while holding the shared lock; an eviction afterwards only unlinks the name.

The size bound counts blob bytes plus entry files. After every insert, and on ``prune``,
the least recently used entries go first, then blobs no entry names any more.

The cache never fails a run: a cache that cannot be read or written is logged and ignored.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import OutputError
from ..model.digest import Digest
from .entry import BadEntry, Entry, read_entry
from .key import CacheKey
from .locking import locked, try_lock
from .pending import Hit, Pending
from .recording import Recording
from .sizes import DEFAULT_MAX_SIZE

log = logging.getLogger(__name__)

#: The default size bound: 10 GB.

_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by occystrap (layer cache).\n"
)


@dataclass(frozen=True)
class PruneResult:
    removed_entries: int
    removed_bytes: int
    kept_entries: int
    kept_bytes: int


class LayerCache:
    """The layer cache at ``root``, bounded to ``max_size`` bytes."""

    def __init__(self, root: str | os.PathLike[str], max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.max_size = max_size
        self.entries_dir = os.path.join(self.root, "entries")
        self.blobs_dir = os.path.join(self.root, "blobs", "sha256")
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.lock_path = os.path.join(self.root, "lock")
        try:
            for d in (self.entries_dir, self.blobs_dir, self.tmp_dir):
                os.makedirs(d, exist_ok=True)
            tag = os.path.join(self.root, "CACHEDIR.TAG")
            if not os.path.exists(tag):
                with open(tag, "w", encoding="ascii") as f:
                    f.write(_TAG)
        except OSError as e:
            raise OutputError(f"cannot use layer cache {self.root}: {e.strerror}") from None

    # -- paths -----------------------------------------------------------------------------

    def entry_path(self, entry_id: str) -> str:
        return os.path.join(self.entries_dir, f"{entry_id}.json")

    def blob_path(self, digest: Digest) -> str:
        return os.path.join(self.blobs_dir, digest.encoded)

    # -- use -------------------------------------------------------------------------------

    def lookup(self, key: CacheKey) -> Hit | None:
        """The entry for ``key`` with its blob open, touched as just used; None on a miss."""
        entry_id = key.id
        path = self.entry_path(entry_id)
        try:
            with locked(self.lock_path, exclusive=False):
                try:
                    entry = read_entry(path, entry_id)
                except FileNotFoundError:
                    return None
                except BadEntry as e:
                    log.warning("layer cache: dropping unusable entry: %s", e)
                    _unlink(path)
                    return None
                if entry.key != key.as_json():
                    return None
                blob = None
                if entry.blob is not None:
                    try:
                        blob = open(self.blob_path(entry.blob), "rb")
                    except FileNotFoundError:
                        log.warning("layer cache: entry %s lost its blob; dropped", entry_id)
                        _unlink(path)
                        return None
                    if os.fstat(blob.fileno()).st_size != entry.size:
                        blob.close()
                        log.warning("layer cache: blob of entry %s has the wrong size", entry_id)
                        _unlink(path)
                        return None
                os.utime(path)
        except OSError as e:
            log.warning("layer cache %s unusable: %s", self.root, e.strerror)
            return None
        log.debug("layer cache hit %s for %s", entry_id[:12], key.source)
        return Hit(entry, blob)

    def begin(self, key: CacheKey) -> Pending | None:
        """A place to record the output for ``key`` while it streams; None if the cache
        cannot be written."""
        try:
            fd, tmp = tempfile.mkstemp(prefix="blob-", dir=self.tmp_dir)
        except OSError as e:
            log.warning("layer cache %s not writable: %s", self.root, e.strerror)
            return None
        return Pending(self, key, fd, tmp)

    def record(self, key: CacheKey | None) -> Recording:
        """A :class:`.recording.Recording` of the output for ``key`` (use it with ``with``)."""
        return Recording(self, key)

    def forget(self, entry: Entry) -> None:
        """Drop an entry whose blob turned out damaged, and the blob (entries sharing it
        are just as damaged; they miss and are dropped when next looked up)."""
        log.info("layer cache: dropping damaged entry %s", entry.id)
        with locked(self.lock_path, exclusive=False):
            _unlink(self.entry_path(entry.id))
            if entry.blob is not None:
                _unlink(self.blob_path(entry.blob))

    def publish(self, entry: Entry, tmp: str | None) -> None:
        """Move the checked blob file ``tmp`` into place and write ``entry`` (shared lock)."""
        data = entry.to_bytes()
        fd, entry_tmp = tempfile.mkstemp(prefix="entry-", dir=self.tmp_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            with locked(self.lock_path, exclusive=False):
                if entry.blob is not None and tmp is not None:
                    final = self.blob_path(entry.blob)
                    if os.path.exists(final) and os.path.getsize(final) == entry.size:
                        _unlink(tmp)
                    else:
                        os.replace(tmp, final)
                os.replace(entry_tmp, self.entry_path(entry.id))
        finally:
            _unlink(entry_tmp)

    # -- listing and eviction ----------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every readable entry, most recently used first."""
        found = list(self._scan())
        found.sort(key=lambda e: e.last_used, reverse=True)
        return found

    def usage(self) -> int:
        """Bytes the cache holds: blobs plus entry files."""
        total = 0
        for d in (self.blobs_dir, self.entries_dir):
            for name in _listdir(d):
                try:
                    total += os.stat(os.path.join(d, name)).st_size
                except FileNotFoundError:
                    pass
        return total

    def prune(self, max_size: int | None = None, everything: bool = False) -> PruneResult:
        """Evict least recently used entries until the cache fits ``max_size`` (the cache's
        own bound by default), or everything; remove orphan blobs and abandoned writes."""
        limit = 0 if everything else (self.max_size if max_size is None else max_size)
        with locked(self.lock_path, exclusive=True):
            return self._evict(limit)

    def _evict(self, limit: int) -> PruneResult:
        entries = sorted(self._scan(), key=lambda e: e.last_used)  # oldest first
        entry_bytes = {e.id: _size(self.entry_path(e.id)) for e in entries}
        blob_bytes = {
            name: _size(os.path.join(self.blobs_dir, name)) for name in _listdir(self.blobs_dir)
        }
        users: dict[str, int] = {}
        for e in entries:
            if e.blob is not None:
                users[e.blob.encoded] = users.get(e.blob.encoded, 0) + 1
        removed_entries = removed_bytes = 0
        for name, size in blob_bytes.items():
            if name not in users:  # an orphan: its entry was evicted or never written
                _unlink(os.path.join(self.blobs_dir, name))
                removed_bytes += size
        total = sum(s for n, s in blob_bytes.items() if n in users) + sum(entry_bytes.values())
        kept = len(entries)
        for e in entries:
            if total <= limit:
                break
            _unlink(self.entry_path(e.id))
            total -= entry_bytes[e.id]
            removed_bytes += entry_bytes[e.id]
            removed_entries += 1
            kept -= 1
            if e.blob is not None:
                users[e.blob.encoded] -= 1
                if users[e.blob.encoded] == 0:
                    size = blob_bytes.get(e.blob.encoded, 0)
                    _unlink(os.path.join(self.blobs_dir, e.blob.encoded))
                    total -= size
                    removed_bytes += size
            log.debug("layer cache: evicted %s", e.id[:12])
        self._clear_abandoned()
        return PruneResult(removed_entries, removed_bytes, kept, total)

    def enforce(self) -> None:
        """Evict down to ``max_size`` if the cache grew past it (after an insert)."""
        try:
            if self.usage() <= self.max_size:
                return
            with locked(self.lock_path, exclusive=True):
                self._evict(self.max_size)
        except OSError as e:
            log.warning("layer cache %s: eviction failed: %s", self.root, e.strerror)

    def _scan(self) -> Iterator[Entry]:
        for name in _listdir(self.entries_dir):
            if not name.endswith(".json"):
                continue
            entry_id = name[: -len(".json")]
            try:
                yield read_entry(self.entry_path(entry_id), entry_id)
            except FileNotFoundError:
                continue
            except BadEntry as e:
                log.warning("layer cache: ignoring unusable entry: %s", e)

    def _clear_abandoned(self) -> None:
        """Remove files under tmp/ whose writer is gone (nobody holds their lock)."""
        for name in _listdir(self.tmp_dir):
            path = os.path.join(self.tmp_dir, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if try_lock(fd) and time.time() - os.fstat(fd).st_mtime > 60:
                    _unlink(path)
            finally:
                os.close(fd)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
