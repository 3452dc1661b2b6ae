"""Whiteouts, opaque directories, and removing what a layer replaces.

``.wh.NAME`` removes NAME, and ``.wh..wh..opq`` removes every child of its directory, but
only what came from *lower* layers: paths in ``LayerState.upper`` survive, whatever order
the tar lists things in. This makes an opaque marker behave as if it came before its
siblings, as the spec requires, and matches by whole path components (``usr/lib`` never
touches ``usr/libexec``). A bare ``.wh.`` is malformed; other ``.wh..wh.*`` names (aufs
metadata) are skipped. Whiteout entries themselves never reach the rootfs.

Removal never follows a symlink; rootless, a directory we own but cannot enter or empty
is given u+rwx first.
"""

from __future__ import annotations

import os
import stat

from ..errors import MalformedInput
from .safepath import Missing, resolve_parent
from .state import DIR_FLAGS, LayerState

WHITEOUT = ".wh."
AUFS_META = ".wh..wh."
OPAQUE = ".wh..wh..opq"


def is_whiteout(parts: tuple[str, ...]) -> bool:
    return bool(parts) and parts[-1].startswith(WHITEOUT)


def in_aufs_meta(parts: tuple[str, ...]) -> bool:
    """Inside aufs' own directories (e.g. ``.wh..wh.plnk``): never content."""
    return any(part.startswith(AUFS_META) for part in parts[:-1])


def apply_whiteout(state: LayerState, name: str, parts: tuple[str, ...]) -> None:
    """Apply the whiteout entry ``name`` (split into ``parts``)."""
    base = parts[-1]
    target = base[len(WHITEOUT) :]
    if target in ("", ".", ".."):
        raise MalformedInput(f"whiteout entry {name!r} names nothing")
    if base != OPAQUE and base.startswith(AUFS_META):
        state.stats.warn(f"skipped aufs metadata entry {name!r}")
        return
    if base == OPAQUE:
        state.stats.opaque_whiteouts += 1
    else:
        state.stats.whiteouts += 1
    try:
        parent = resolve_parent(state.root_fd, parts, create_dirs=False, label=name)
    except Missing:
        return  # nothing below to hide
    try:
        if base == OPAQUE:
            for child in os.listdir(parent.fd):
                _prune(state, parent.fd, parent.path, child)
        else:
            _prune(state, parent.fd, parent.path, target)
    finally:
        parent.close()


def _prune(state: LayerState, dir_fd: int, dir_path: tuple[str, ...], name: str) -> None:
    """Remove ``name`` and what is below it, except paths this layer created."""
    key = "/".join((*dir_path, name))
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if key not in state.upper:
        state.touch(dir_fd, dir_path)
        remove(state, dir_fd, name, st)
    elif stat.S_ISDIR(st.st_mode):
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        try:
            for child in os.listdir(fd):
                _prune(state, fd, (*dir_path, name), child)
        finally:
            os.close(fd)


def remove(state: LayerState, dir_fd: int, name: str, st: os.stat_result) -> None:
    """Remove the node ``name`` (whose lstat is ``st``) from the directory ``dir_fd``."""
    if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
        state.cache_stale = True  # the fd may be in use right now: drop it before the next entry
    if stat.S_ISDIR(st.st_mode):
        _rmtree(dir_fd, name, rootless=not state.options.ownership.privileged)
    else:
        os.unlink(name, dir_fd=dir_fd)


def remove_tree(path: str) -> None:
    """Remove the directory tree ``path`` (e.g. a half-built rootfs), following no symlink;
    directories we own but cannot enter or empty are given u+rwx first."""
    parent, name = os.path.split(os.path.abspath(path))
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _rmtree(fd, name, rootless=True)
    finally:
        os.close(fd)


def _rmtree(dir_fd: int, name: str, *, rootless: bool) -> None:
    """Remove a directory tree without following symlinks (rootless: fixing modes)."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        if not rootless:
            raise
        os.chmod(name, 0o700, dir_fd=dir_fd)  # a directory we own (checked by lstat)
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        if rootless and os.fstat(fd).st_mode & 0o700 != 0o700:
            os.chmod(fd, 0o700)
        with os.scandir(fd) as children:
            for child in children:
                if child.is_dir(follow_symlinks=False):
                    _rmtree(fd, child.name, rootless=rootless)
                else:
                    os.unlink(child.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
