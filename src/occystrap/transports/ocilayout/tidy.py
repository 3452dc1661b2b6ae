"""What ``ocidir://`` writers leave behind, and who may remove it.

A writer locks each temporary file it makes (``flock``, held until the file is renamed or
removed), so a file nobody holds was left by a killed writer (``flock`` locks die with their
process, SIGKILL included).

- ``blobs/<alg>/.tmp-*``: :func:`sweep_blob_temps` removes those that are regular files, at
  least :data:`STALE_AFTER` seconds old (a writer that has just created its file has not
  locked it yet) and not locked by anyone.
- ``<root>/.tmp-*``: only ``index.json`` and ``oci-layout`` are written there, always under
  the layout lock, so whoever holds that lock may remove them all (:func:`remove_root_temps`).

Every writer holds a shared ``flock`` on the layout directory itself from ``begin`` until its
``commit`` or ``abort`` (:func:`hold`). A writer that created the directory and fails before
anything was committed removes the layout it made (:func:`remove_layout`), but only when it
can take that lock exclusively (no other writer is at work in it) and ``index.json`` does not
exist.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat

from ...filelocks import remove_unlocked
from .layout import INDEX_FILE, LAYOUT_FILE, LOCK_FILE

log = logging.getLogger(__name__)

PREFIX = ".tmp-"
#: A temporary blob file younger than this is never swept.
STALE_AFTER = 3600.0


def lock_temp(fileno: int) -> None:
    """Mark a just-created temporary file as in use (until it is closed)."""
    fcntl.flock(fileno, fcntl.LOCK_EX)


def hold(root: str) -> int | None:
    """A shared lock on the directory ``root`` (its fd), or None when ``root`` was removed or
    replaced meanwhile (the caller creates it again)."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if os.stat(root).st_ino == os.fstat(fd).st_ino:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def sweep_blob_temps(root: str) -> int:
    """Remove the stale temporary files under ``root/blobs/*/``; how many went."""
    removed = 0
    blobs = os.path.join(root, "blobs")
    with contextlib.suppress(OSError):
        for alg in os.listdir(blobs):
            directory = os.path.join(blobs, alg)
            with contextlib.suppress(OSError):
                for name in os.listdir(directory):
                    path = os.path.join(directory, name)
                    if name.startswith(PREFIX) and remove_unlocked(path, STALE_AFTER):
                        removed += 1
    if removed:
        log.info("removed %d temporary files killed writers left in %s", removed, blobs)
    return removed


def remove_root_temps(root: str) -> None:
    """Remove ``root/.tmp-*`` regular files; the caller holds the layout lock."""
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                if name.startswith(PREFIX) and stat.S_ISREG(os.lstat(path).st_mode):
                    os.unlink(path)


def remove_layout(root: str, held: int) -> bool:
    """Remove the uncommitted layout at ``root`` when no other writer holds it (``held`` is
    this writer's :func:`hold`); True when it went. Unknown entries are left in place."""
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # another writer is at work in it
    if os.path.lexists(os.path.join(root, INDEX_FILE)):
        return False
    remove_root_temps(root)
    blobs = os.path.join(root, "blobs")
    with contextlib.suppress(OSError):
        for alg in os.listdir(blobs):
            directory = os.path.join(blobs, alg)
            with contextlib.suppress(OSError):
                for name in os.listdir(directory):
                    path = os.path.join(directory, name)
                    if stat.S_ISREG(os.lstat(path).st_mode):
                        os.unlink(path)
            with contextlib.suppress(OSError):
                os.rmdir(directory)
    for name in (LAYOUT_FILE, LOCK_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(root, name))
    for directory in (blobs, root):
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    return not os.path.lexists(root)


__all__ = [
    "PREFIX",
    "STALE_AFTER",
    "hold",
    "lock_temp",
    "remove_layout",
    "remove_root_temps",
    "sweep_blob_temps",
]
