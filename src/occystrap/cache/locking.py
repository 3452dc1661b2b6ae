"""File locks of the layer cache (``fcntl.flock``), shared between processes and threads.

``DIR/lock`` guards the directory: lookups and inserts hold it shared for the few system
calls that read or publish an entry; eviction and pruning hold it exclusive while they
decide what to delete. Every acquisition opens its own descriptor, so threads of one
process exclude each other like separate processes do. A file being written under
``tmp/`` is held exclusively by its writer, so a pruner can tell a live write from one a
killed process left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator


@contextlib.contextmanager
def locked(path: str, exclusive: bool) -> Iterator[None]:
    """Hold ``path`` (created when missing) locked, shared or exclusive, while in the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def try_lock(fd: int) -> bool:
    """Lock ``fd`` exclusively without waiting; False when someone else holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def hold(fd: int) -> None:
    """Lock ``fd`` exclusively (a file this process is writing)."""
    fcntl.flock(fd, fcntl.LOCK_EX)
