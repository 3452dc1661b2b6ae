"""A run's work directory in a ``dir://`` store, and the sweep of those killed runs left.

Each run works in ``PATH/.tmp-<random>/`` and holds an exclusive ``flock`` on its
``owner.lock`` for as long as the directory exists. The lock file is created and locked
under a temporary name and only then renamed to ``owner.lock``, so an ``owner.lock`` that
can be locked belongs to a writer that is gone (the kernel drops a lock when its holder dies,
SIGKILL included) and its directory is abandoned. :func:`sweep` removes those; a directory
without ``owner.lock`` (a run killed within its first instant, or an older occystrap) only
once it is ``STALE_AGE`` old. A live writer's directory is never touched, whichever process
or thread owns it (``flock`` locks belong to open files, not processes).

:func:`sweep_json_temps` removes the ``.<name>.json.tmp-*`` files ``atomic_write`` leaves when
killed while replacing ``catalog.json`` or a manifest file; those are only written under the
store lock, so the caller, holding that lock, knows nobody is writing them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from typing import Any

from ...errors import OutputError

log = logging.getLogger(__name__)

PREFIX = ".tmp-"
OWNER = "owner.lock"
#: a work directory without an owner.lock is left alone until it is this old (seconds)
STALE_AGE = 24 * 3600


class WorkDir:
    """``root/.tmp-<random>/``, created and locked by this run; ``close`` removes it."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, f"{PREFIX}{secrets.token_hex(6)}")
        self._fd: int | None = None
        try:
            os.makedirs(self.path)
            pending = os.path.join(self.path, f".{OWNER}.{secrets.token_hex(4)}")
            self._fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            os.rename(pending, os.path.join(self.path, OWNER))
        except OSError as e:
            self.close()
            raise OutputError(f"cannot create {self.path}: {e.strerror}") from None

    def close(self) -> None:
        """Remove the directory, then let go of the lock."""
        if os.path.lexists(self.path):
            remove_tree(self.path)
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def sweep(root: str, keep: str | None = None) -> int:
    """Remove the work directories of dead writers under ``root`` (but ``keep``); how many."""
    try:
        names = [n for n in os.listdir(root) if n.startswith(PREFIX)]
    except OSError:
        return 0
    removed = 0
    for name in names:
        path = os.path.join(root, name)
        if path != keep and _sweep_one(path):
            removed += 1
    if removed:
        log.info("removed %d work directories of interrupted runs from %s", removed, root)
    return removed


def _sweep_one(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(os.path.join(path, OWNER), flags)
    except FileNotFoundError:
        if time.time() - st.st_mtime < STALE_AGE:
            return False  # maybe a writer that has not locked yet
        remove_tree(path)
        return True
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it (or the lock cannot be taken: leave it)
        if os.path.lexists(path):  # another sweeper may have removed it meanwhile
            remove_tree(path)
        return True
    finally:
        os.close(fd)


def sweep_json_temps(root: str) -> None:
    """Remove ``root/.<name>.json.tmp-*`` files; the caller holds the store lock."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if name.startswith(".") and ".json.tmp-" in name:
            path = os.path.join(root, name)
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    os.unlink(path)
                    log.info("removed %s, left by an interrupted run", path)
            except OSError as e:
                log.warning("cannot remove %s: %s", path, e.strerror)


def remove_tree(path: str) -> None:
    """Remove ``path`` even when the tree holds read-only directories (as unpacked images do)."""

    def retry(func: Callable[..., Any], failed: str, exc_info: Any) -> None:
        if isinstance(exc_info[1], FileNotFoundError):
            return  # removed meanwhile (another sweeper)
        parent = os.path.dirname(failed)
        try:
            os.chmod(parent, stat.S_IRWXU | os.stat(parent).st_mode)
            func(failed)
        except OSError as e:
            log.warning("cannot remove %s: %s", failed, e.strerror)

    shutil.rmtree(path, onerror=retry)
