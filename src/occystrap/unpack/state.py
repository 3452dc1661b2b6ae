"""What one layer's application remembers while it runs, and the deferred directory fix-ups.

* ``upper``: paths this layer created, and their ancestors. Whiteouts only remove what
  came from *lower* layers, so these survive whatever order the tar lists things in.
* ``explicit``: paths named by an entry of this layer (a second one is a duplicate).
* Directory modes and times are applied when the layer ends, deepest first, because
  adding children changes them (``dir_meta``); a directory this layer only changed the
  contents of gets its previous times back (``touched``).
* Rootless, a lower layer's directory lacking u+wx is opened up while this layer writes
  into it, then given its mode back (``loosened``).
* A small cache of open parent directories, dropped whenever a directory or symlink is
  removed (that may change what a path names).
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import MalformedInput, OccystrapError, OutputError
from .ownership import ApplyOptions
from .safepath import Parent, resolve_parent
from .stats import LayerStats

PARENT_CACHE = 16
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors the layer's own content causes (we create every parent we need, so a missing
# path means the layer contradicts itself); anything else is the output's fault.
_BAD_INPUT_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                     errno.EMLINK, errno.EINVAL, errno.E2BIG, errno.ERANGE, errno.ENOENT}  # fmt: skip


class LayerState:
    def __init__(self, root_fd: int, options: ApplyOptions) -> None:
        self.root_fd = root_fd
        self.options = options
        self.stats = LayerStats()
        self.upper: set[str] = set()
        self.explicit: set[str] = set()
        self.dir_meta: dict[str, tuple[int, int, int]] = {}  # key -> (mode, atime, mtime)
        self.touched: dict[str, tuple[int, int]] = {}  # key -> times before we changed it
        self.loosened: dict[str, int] = {}  # key -> mode before we added u+wx
        # Closing stale entries waits for the next entry, since one fd may be in use now.
        self.parents: dict[tuple[str, ...], Parent] = {}
        self.cache_stale = False

    # -- parent directories -----------------------------------------------------------

    def parent_of(self, parts: tuple[str, ...], label: str) -> Parent:
        """The (cached) directory that will hold ``parts``, creating missing directories."""
        if self.cache_stale:
            self.forget_parents()
        found = self.parents.get(parts[:-1])
        if found is None:
            found = resolve_parent(
                self.root_fd, parts, create_dirs=True, on_mkdir=self.on_mkdir, label=label
            )
            if len(self.parents) >= PARENT_CACHE:
                self.parents.pop(next(iter(self.parents))).close()
            self.parents[parts[:-1]] = found
        return Parent(found.fd, parts[-1], found.path)

    def forget_parents(self) -> None:
        for parent in self.parents.values():
            parent.close()
        self.parents.clear()
        self.cache_stale = False

    # -- bookkeeping ------------------------------------------------------------------

    def note_explicit(self, key: str, name: str) -> None:
        if key in self.explicit:
            self.stats.duplicates += 1
            self.stats.warn(f"duplicate path {name!r} in one layer; the later entry wins")
        self.explicit.add(key)

    def on_mkdir(self, parent_fd: int, parent_path: tuple[str, ...], name: str) -> None:
        self.touch(parent_fd, parent_path)
        self.mark_upper((*parent_path, name))

    def touch(self, dir_fd: int, dir_path: tuple[str, ...]) -> None:
        """Remember a directory's times before this layer first changes its contents.

        Rootless, a lower layer's directory may lack u+wx (e.g. 0555); we own it, so we
        open it up now and put the mode back in :meth:`finish`.
        """
        key = "/".join(dir_path)
        if key not in self.touched:
            st = os.fstat(dir_fd)
            self.touched[key] = (st.st_atime_ns, st.st_mtime_ns)
            mode = stat.S_IMODE(st.st_mode)
            if not self.options.ownership.privileged and mode & 0o300 != 0o300:
                os.chmod(dir_fd, mode | 0o700)
                self.loosened[key] = mode

    def mark_upper(self, full: tuple[str, ...]) -> None:
        for i in range(len(full), 0, -1):
            key = "/".join(full[:i])
            if key in self.upper:
                break
            self.upper.add(key)

    # -- end of layer -----------------------------------------------------------------

    def finish(self) -> None:
        """Apply deferred directory modes and times, deepest first."""
        keys = set(self.dir_meta) | set(self.touched)
        for key in sorted(keys, key=lambda k: k.count("/") + 1 if k else 0, reverse=True):
            try:
                fd = self._open_dir(key)
            except OSError:
                continue  # removed or replaced later in the layer
            try:
                meta = self.dir_meta.get(key)
                if meta is not None:
                    os.chmod(fd, meta[0])
                    os.utime(fd, ns=meta[1:])
                else:
                    if key in self.loosened:
                        os.chmod(fd, self.loosened[key])
                    os.utime(fd, ns=self.touched[key])
            except OSError as exc:
                raise os_error(key or ".", exc) from None
            finally:
                os.close(fd)

    def _open_dir(self, key: str) -> int:
        """Open a directory by its real path, following no symlink at all: if a component
        was replaced by a symlink later in the layer, the key names nothing any more."""
        fd = os.dup(self.root_fd)
        for part in key.split("/") if key else ():
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            finally:
                os.close(fd)
            fd = child
        return fd


def os_error(name: str, exc: OSError) -> OccystrapError:
    """An OSError while extracting ``name``, as the input's fault or the output's."""
    message = f"cannot extract {name!r}: {exc.strerror or exc}"
    if exc.errno in _BAD_INPUT_ERRNOS:
        return MalformedInput(message)
    return OutputError(message)
