"""Files under a directory as a watcher sees them, the unnamed ones too.

occystrap makes its spool files with ``O_TMPFILE``: they have no name, so listing the
temp directory never shows them. They are visible only as open descriptors of the process
that made them: ``/proc/PID/fd/N`` links to ``DIR/#INODE (deleted)``. :func:`files_under`
looks there too, in every process descended from this one (the CLI a test runs).
"""

from __future__ import annotations

import os
from pathlib import Path


def _descendants(root_pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(name)] = int(fields[1])
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        children = [p for p, parent in parents.items() if parent == pid]
        found += children
        todo += children
    return found


def open_files_under(root: Path, pids: list[int] | None = None) -> dict[str, int]:
    """Size of each file under ``root`` held open by ``pids`` (default: this process's
    descendants), named by what ``/proc`` shows (``#INODE (deleted)`` when unnamed)."""
    prefix = f"{root}/"
    found: dict[str, int] = {}
    for pid in _descendants(os.getpid()) if pids is None else pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
                if target.startswith(prefix):
                    found[target[len(prefix) :]] = os.stat(f"{fd_dir}/{fd}").st_size
            except OSError:
                continue
    return found


def files_under(root: Path) -> dict[str, int]:
    """Size of every file under ``root``: listed ones (relative paths) and unnamed ones
    that this process's descendants hold open."""
    found: dict[str, int] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                found[os.path.relpath(path, root)] = os.lstat(path).st_size
            except OSError:
                pass
    found.update(open_files_under(root))
    return found
