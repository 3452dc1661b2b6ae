"""Per-entry metadata: owner, mode, extended attributes and times, in the order that works.

chown first (``lchown`` semantics, privileged only; rootless it is counted as skipped),
then chmod (chown clears setuid/setgid, so the mode must come after it), then xattrs
from PAX ``SCHILY.xattr.*`` (existing ones are cleared first; ``security.selinux`` is
host policy and skipped, as umoci does), then times. Xattr failures the filesystem or
the caller's privileges cause (ENOTSUP, EPERM, EACCES) are counted and warned about once
per kind; anything else is raised. Times are exact PAX times when present.
"""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation

from .ownership import ApplyOptions
from .stats import LayerStats

IGNORED_XATTRS = frozenset({"security.selinux"})
_XATTR_SKIP_ERRNOS = {errno.ENOTSUP, errno.EPERM, errno.EACCES}


class MetadataWriter:
    """Applies tar headers' metadata to nodes already created, counting what it skips."""

    def __init__(self, options: ApplyOptions, stats: LayerStats) -> None:
        self.options = options
        self.stats = stats
        self.xattr_warned: set[int] = set()

    def owner_and_xattrs(self, info: tarfile.TarInfo, *, fd: int, mode: bool = False) -> None:
        """chown, then chmod when ``mode`` (after chown, which clears setuid), then xattrs."""
        if self.options.ownership.can_chown:
            os.chown(fd, info.uid, info.gid)
        elif self.options.ownership.needs_chown(info.uid, info.gid):
            self.stats.chown_skipped += 1
        if mode:
            os.chmod(fd, info.mode & 0o7777)
        self.xattrs(info, fd)

    def path_metadata(self, info: tarfile.TarInfo, pfd: int, base: str, *, symlink: bool) -> None:
        """Metadata for nodes we must not open (symlinks, fifos, devices)."""
        if self.options.ownership.can_chown:
            os.chown(base, info.uid, info.gid, dir_fd=pfd, follow_symlinks=False)
        elif self.options.ownership.needs_chown(info.uid, info.gid):
            self.stats.chown_skipped += 1
        if not symlink:
            os.chmod(base, info.mode & 0o7777, dir_fd=pfd)
        # /proc/self/fd/N pins the (already safe) directory; the last component is not followed.
        self.xattrs(info, f"/proc/self/fd/{pfd}/{base}")
        os.utime(base, ns=entry_times(info), dir_fd=pfd, follow_symlinks=False)

    def xattrs(self, info: tarfile.TarInfo, target: int | str) -> None:
        if not self.options.xattrs:
            return
        wanted = dict(xattrs_of(info))
        follow = isinstance(target, int)  # an fd cannot be combined with follow_symlinks=False
        try:
            for name in os.listxattr(target, follow_symlinks=follow):
                if name not in wanted and name not in IGNORED_XATTRS:
                    os.removexattr(target, name, follow_symlinks=follow)
        except OSError as exc:
            self._failed(info.name, "clearing xattrs", exc)
        for name, value in wanted.items():
            if name in IGNORED_XATTRS:
                self.stats.xattrs_skipped += 1
                self.stats.warn(f"ignored xattr {name!r} on {info.name!r}")
                continue
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as exc:
                self.stats.xattrs_skipped += 1
                self._failed(info.name, f"setting xattr {name!r}", exc)

    def _failed(self, name: str, doing: str, exc: OSError) -> None:
        if exc.errno not in _XATTR_SKIP_ERRNOS:
            raise exc
        if exc.errno not in self.xattr_warned:
            self.xattr_warned.add(exc.errno or 0)
            self.stats.warn(
                f"{doing} on {name!r} failed ({exc.strerror}); "
                "continuing, further failures of this kind are only counted"
            )


def xattrs_of(info: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    """The ``SCHILY.xattr.*`` PAX records of an entry, as (name, raw value)."""
    for key, value in info.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            yield key[len("SCHILY.xattr.") :], value.encode("utf-8", "surrogateescape")


def entry_times(info: tarfile.TarInfo) -> tuple[int, int]:
    """(atime_ns, mtime_ns): exact PAX times when present; atime defaults to mtime."""
    mtime = _ns(info.pax_headers.get("mtime"))
    if mtime is None:
        mtime = int(Decimal(repr(float(info.mtime))) * 1_000_000_000)
    atime = _ns(info.pax_headers.get("atime"))
    return (mtime if atime is None else atime), mtime


def _ns(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(Decimal(text) * 1_000_000_000)
    except (InvalidOperation, ValueError):
        return None
