"""Removing files that nobody owns any more.

A writer holds an ``flock`` on each file it is still writing or serving; ``flock`` locks
belong to open files and vanish with a killed process. So a file that can be locked
without waiting has no live owner, and :func:`remove_unlocked` may delete it.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time


def remove_unlocked(path: str | os.PathLike[str], min_age: float = 0.0) -> bool:
    """Unlink the regular file ``path`` if nobody holds a lock on it and it has not been
    modified for ``min_age`` seconds; True when it went. Symlinks, other types, a file
    replaced meanwhile, and any error leave things as they are."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < min_age:
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.lstat(path).st_ino != st.st_ino:
            return False  # replaced meanwhile
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
