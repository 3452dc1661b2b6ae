"""Apply image layers (tar changesets) to a root directory, as the OCI image-spec layer.md says.

Rules, in the order a reader meets them:

* Names are normalised (``./a//b/`` is ``a/b``); absolute names, NUL bytes and ``..`` that
  climbs above the root are refused (:func:`safepath.split_name`). Every path is reached
  through :mod:`safepath`, so nothing is ever written through a symlink that leaves the root.
* ``.wh.NAME`` removes NAME, and ``.wh..wh..opq`` removes every child of its directory, but
  only what came from *lower* layers: the paths this layer created (and their ancestors)
  are remembered in ``upper`` and survive, whatever order the tar lists things in. This
  makes an opaque marker behave as if it came before its siblings, as the spec requires,
  and matches by whole path components (``usr/lib`` never touches ``usr/libexec``).
  A bare ``.wh.`` is malformed; other ``.wh..wh.*`` names (aufs metadata) are skipped.
  Whiteout entries themselves never reach the rootfs.
* Changesets: a directory over a directory keeps it and replaces its attributes; anything
  else unlinks (or removes the tree) and recreates.
* Metadata: chown (``lchown`` semantics, privileged only), then chmod (so setuid/setgid
  survive), then xattrs from PAX ``SCHILY.xattr.*`` (existing ones are cleared first;
  ``security.selinux`` is host policy and skipped, as umoci does), then times. Hardlinks
  share their target's inode and get no metadata of their own. Directory modes and times
  are applied when the layer ends, deepest first, because adding children changes them;
  a directory this layer only changed the contents of gets its previous times back.
* Duplicate paths in one layer: the later entry wins and a warning is counted.
* Devices follow ``ApplyOptions.devices`` (create when privileged, skip, or refuse).
  Rootless (``OwnershipPolicy(privileged=False)``): no chown, no mknod (both counted), and
  a lower layer's directory lacking u+wx is opened up while this layer writes into it,
  then given its mode back.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import BinaryIO

from ..errors import MalformedInput, OccystrapError, OutputError, UnsafeArchiveEntry
from ..tario.entry import TarEntry
from .ownership import DevicePolicy, OwnershipPolicy
from .safepath import Missing, Parent, resolve_parent, split_name

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
WHITEOUT = ".wh."
AUFS_META = ".wh..wh."
OPAQUE = ".wh..wh..opq"
IGNORED_XATTRS = frozenset({"security.selinux"})
MAX_WARNINGS = 100
PARENT_CACHE = 16
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors the layer's own content causes (we create every parent we need, so a missing
# path means the layer contradicts itself); anything else is the output's fault.
_BAD_INPUT_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                     errno.EMLINK, errno.EINVAL, errno.E2BIG, errno.ERANGE, errno.ENOENT}  # fmt: skip
_XATTR_SKIP_ERRNOS = {errno.ENOTSUP, errno.EPERM, errno.EACCES}


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    ownership: OwnershipPolicy = field(default_factory=OwnershipPolicy.detect)
    devices: DevicePolicy = DevicePolicy.CREATE
    xattrs: bool = True


@dataclass(slots=True)
class LayerStats:
    """What one layer did; ``warnings`` keeps the first ``MAX_WARNINGS`` messages."""

    entries: int = 0
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    fifos: int = 0
    devices: int = 0
    whiteouts: int = 0
    opaque_whiteouts: int = 0
    bytes_written: int = 0
    duplicates: int = 0
    devices_skipped: int = 0
    chown_skipped: int = 0
    xattrs_skipped: int = 0
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        logger.warning("%s", message)
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)


def apply_layer(
    entries: Iterable[TarEntry], root: str, *, options: ApplyOptions | None = None
) -> LayerStats:
    """Apply one layer's entries to the existing directory ``root``."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OutputError(f"cannot open unpack root {root!r}: {exc.strerror}") from None
    try:
        applier = _Applier(root_fd, options or ApplyOptions())
        try:
            for entry in entries:
                applier.apply(entry)
            applier.finish()
        finally:
            applier.forget_parents()
        return applier.stats
    finally:
        os.close(root_fd)


def apply_layers(
    layer_streams: Iterable[BinaryIO], root: str, *, options: ApplyOptions | None = None
) -> list[LayerStats]:
    """Apply uncompressed layer tar streams to ``root`` in order (base layer first)."""
    from ..tario.reader import iter_entries

    return [apply_layer(iter_entries(stream), root, options=options) for stream in layer_streams]


class _Applier:
    def __init__(self, root_fd: int, options: ApplyOptions) -> None:
        self.root_fd = root_fd
        self.options = options
        self.stats = LayerStats()
        self.upper: set[str] = set()  # created by this layer, or an ancestor of such a path
        self.explicit: set[str] = set()  # named by an entry of this layer
        self.dir_meta: dict[str, tuple[int, int, int]] = {}  # key -> (mode, atime, mtime)
        self.touched: dict[str, tuple[int, int]] = {}  # key -> times before we changed it
        self.loosened: dict[str, int] = {}  # rootless: key -> mode before we added u+wx
        self.xattr_warned: set[int] = set()
        self.buffer = memoryview(bytearray(CHUNK))
        # Recently used parent directories, reused by later entries in them. All are
        # dropped whenever a directory or symlink is removed (that may change what a path
        # names); closing waits for the next entry since one fd may be in use right then.
        self.parents: dict[tuple[str, ...], Parent] = {}
        self.cache_stale = False

    def apply(self, entry: TarEntry) -> None:
        if entry.info.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
            return  # PAX header records a reader chose to show us: not a path
        self.stats.entries += 1
        name = entry.info.name
        try:
            parts = split_name(name)
            if any(part.startswith(AUFS_META) for part in parts[:-1]):
                return  # inside aufs' hardlink directory (.wh..wh.plnk): never content
            if parts and parts[-1].startswith(WHITEOUT):
                self._whiteout(name, parts)
            elif not parts:
                self._root(entry)
            else:
                self._create(entry, parts)
        except OSError as exc:
            raise _os_error(name, exc) from None
        except (OverflowError, ValueError) as exc:  # e.g. an absurd uid or mtime, a NUL in a link
            raise MalformedInput(f"cannot extract {name!r}: {exc}") from None

    # -- whiteouts --------------------------------------------------------------------

    def _whiteout(self, name: str, parts: tuple[str, ...]) -> None:
        base = parts[-1]
        target = base[len(WHITEOUT) :]
        if target in ("", ".", ".."):
            raise MalformedInput(f"whiteout entry {name!r} names nothing")
        if base != OPAQUE and base.startswith(AUFS_META):
            self.stats.warn(f"skipped aufs metadata entry {name!r}")
            return
        if base == OPAQUE:
            self.stats.opaque_whiteouts += 1
        else:
            self.stats.whiteouts += 1
        try:
            parent = resolve_parent(self.root_fd, parts, create_dirs=False, label=name)
        except Missing:
            return  # nothing below to hide
        try:
            if base == OPAQUE:
                for child in os.listdir(parent.fd):
                    self._prune(parent.fd, parent.path, child)
            else:
                self._prune(parent.fd, parent.path, target)
        finally:
            parent.close()

    def _prune(self, dir_fd: int, dir_path: tuple[str, ...], name: str) -> None:
        """Remove ``name`` and what is below it, except paths this layer created."""
        key = "/".join((*dir_path, name))
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if key not in self.upper:
            self._touch(dir_fd, dir_path)
            self._remove(dir_fd, name, st)
        elif stat.S_ISDIR(st.st_mode):
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                for child in os.listdir(fd):
                    self._prune(fd, (*dir_path, name), child)
            finally:
                os.close(fd)

    # -- entries ----------------------------------------------------------------------

    def _root(self, entry: TarEntry) -> None:
        if not entry.info.isdir():
            raise UnsafeArchiveEntry(entry.info.name, "refusing to change the type of the root")
        self._note_explicit("", entry.info.name)
        self.stats.directories += 1
        self._owner_and_xattrs(entry.info, fd=self.root_fd)
        self.dir_meta[""] = (entry.info.mode & 0o7777, *_times(entry.info))

    def _create(self, entry: TarEntry, parts: tuple[str, ...]) -> None:
        info = entry.info
        if (info.ischr() or info.isblk()) and not self._device_allowed(info.name):
            return
        link_parts = split_name(info.linkname) if info.islnk() else ()
        if info.islnk() and not link_parts:
            raise MalformedInput(f"hardlink {info.name!r} points at the root directory")
        if self.cache_stale:
            self.forget_parents()
        found = self.parents.get(parts[:-1])
        if found is None:
            found = resolve_parent(
                self.root_fd, parts, create_dirs=True, on_mkdir=self._on_mkdir, label=info.name
            )
            if len(self.parents) >= PARENT_CACHE:
                self.parents.pop(next(iter(self.parents))).close()
            self.parents[parts[:-1]] = found
        self._create_in(entry, Parent(found.fd, parts[-1], found.path), link_parts)

    def forget_parents(self) -> None:
        for parent in self.parents.values():
            parent.close()
        self.parents.clear()
        self.cache_stale = False

    def _remove(self, dir_fd: int, name: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self.cache_stale = True  # the fd may be in use right now: drop it before the next entry
        if stat.S_ISDIR(st.st_mode):
            self._rmtree(dir_fd, name)
        else:
            os.unlink(name, dir_fd=dir_fd)

    def _rmtree(self, dir_fd: int, name: str) -> None:
        """Remove a directory tree without following symlinks (rootless: fixing modes)."""
        rootless = not self.options.ownership.privileged
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except PermissionError:
            if not rootless:
                raise
            os.chmod(name, 0o700, dir_fd=dir_fd)  # a directory we own (checked by lstat)
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        try:
            if rootless and os.fstat(fd).st_mode & 0o700 != 0o700:
                os.chmod(fd, 0o700)
            with os.scandir(fd) as children:
                for child in children:
                    if child.is_dir(follow_symlinks=False):
                        self._rmtree(fd, child.name)
                    else:
                        os.unlink(child.name, dir_fd=fd)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)

    def _create_in(self, entry: TarEntry, parent: Parent, link_parts: tuple[str, ...]) -> None:
        info, pfd, base, key = entry.info, parent.fd, parent.name, parent.key
        self._note_explicit(key, info.name)
        self._touch(pfd, parent.path)
        try:
            existing: os.stat_result | None = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if info.isdir():
            self._make_dir(info, pfd, base, key, existing)
        elif info.islnk():
            if not self._make_hardlink(info, pfd, base, key, existing, link_parts):
                return
        else:
            self.dir_meta.pop(key, None)
            if existing is not None:
                self._remove(pfd, base, existing)
            if info.isreg():
                self._make_file(entry, pfd, base)
            elif info.issym():
                os.symlink(info.linkname, base, dir_fd=pfd)
                self.stats.symlinks += 1
                self._path_metadata(info, pfd, base, symlink=True)
            elif info.isfifo():
                os.mkfifo(base, 0o600, dir_fd=pfd)
                self.stats.fifos += 1
                self._path_metadata(info, pfd, base, symlink=False)
            elif info.ischr() or info.isblk():
                kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(info.devmajor, info.devminor), dir_fd=pfd)
                self.stats.devices += 1
                self._path_metadata(info, pfd, base, symlink=False)
            else:
                raise MalformedInput(f"tar entry {info.name!r} has unsupported type {info.type!r}")
        self._mark_upper((*parent.path, base))

    def _make_dir(
        self, info: tarfile.TarInfo, pfd: int, base: str, key: str, existing: os.stat_result | None
    ) -> None:
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            self._remove(pfd, base, existing)
            existing = None
        if existing is None:
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
        try:
            self._owner_and_xattrs(info, fd=fd)
        finally:
            os.close(fd)
        self.stats.directories += 1
        self.dir_meta[key] = (info.mode & 0o7777, *_times(info))

    def _make_hardlink(
        self,
        info: tarfile.TarInfo,
        pfd: int,
        base: str,
        key: str,
        existing: os.stat_result | None,
        link_parts: tuple[str, ...],
    ) -> bool:
        try:
            target = resolve_parent(self.root_fd, link_parts, create_dirs=False, label=info.name)
        except Missing:
            raise MalformedInput(
                f"hardlink {info.name!r}: target {info.linkname!r} is missing"
            ) from None
        try:
            try:
                tst = os.stat(target.name, dir_fd=target.fd, follow_symlinks=False)
            except FileNotFoundError:
                raise MalformedInput(
                    f"hardlink {info.name!r}: target {info.linkname!r} is missing"
                ) from None
            if stat.S_ISDIR(tst.st_mode):
                raise MalformedInput(
                    f"hardlink {info.name!r}: target {info.linkname!r} is a directory"
                )
            if target.key == key:
                self.stats.warn(f"skipped hardlink {info.name!r} to itself")
                return False
            self.dir_meta.pop(key, None)
            if existing is not None:
                self._remove(pfd, base, existing)
            os.link(target.name, base, src_dir_fd=target.fd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            target.close()
        self.stats.hardlinks += 1
        return True

    def _make_file(self, entry: TarEntry, pfd: int, base: str) -> None:
        fd = os.open(base, _NEW_FILE, 0o600, dir_fd=pfd)
        try:
            remaining = entry.info.size
            while remaining > 0:
                view = self.buffer[: min(remaining, CHUNK)]
                n = entry.body.readinto(view)
                if not n:
                    raise MalformedInput(f"{entry.info.name!r}: the archive ends inside its data")
                done = 0
                while done < n:
                    done += os.write(fd, view[done:n])
                remaining -= n
            self.stats.files += 1
            self.stats.bytes_written += entry.info.size
            self._owner_and_xattrs(entry.info, fd=fd, mode=True)
            os.utime(fd, ns=_times(entry.info))
        finally:
            os.close(fd)

    def _device_allowed(self, name: str) -> bool:
        policy = self.options.devices
        if policy is DevicePolicy.REFUSE:
            raise UnsafeArchiveEntry(name, "device nodes are refused")
        if policy is DevicePolicy.CREATE and self.options.ownership.can_mknod:
            return True
        self.stats.devices_skipped += 1
        why = "device nodes are skipped" if policy is DevicePolicy.SKIP else "rootless"
        self.stats.warn(f"skipped device node {name!r} ({why})")
        return False

    # -- metadata ---------------------------------------------------------------------

    def _owner_and_xattrs(self, info: tarfile.TarInfo, *, fd: int, mode: bool = False) -> None:
        """chown, then chmod when ``mode`` (after chown, which clears setuid), then xattrs."""
        if self.options.ownership.can_chown:
            os.chown(fd, info.uid, info.gid)
        elif self.options.ownership.needs_chown(info.uid, info.gid):
            self.stats.chown_skipped += 1
        if mode:
            os.chmod(fd, info.mode & 0o7777)
        self._xattrs(info, fd)

    def _path_metadata(self, info: tarfile.TarInfo, pfd: int, base: str, *, symlink: bool) -> None:
        """Metadata for nodes we must not open (symlinks, fifos, devices)."""
        if self.options.ownership.can_chown:
            os.chown(base, info.uid, info.gid, dir_fd=pfd, follow_symlinks=False)
        elif self.options.ownership.needs_chown(info.uid, info.gid):
            self.stats.chown_skipped += 1
        if not symlink:
            os.chmod(base, info.mode & 0o7777, dir_fd=pfd)
        # /proc/self/fd/N pins the (already safe) directory; the last component is not followed.
        self._xattrs(info, f"/proc/self/fd/{pfd}/{base}")
        os.utime(base, ns=_times(info), dir_fd=pfd, follow_symlinks=False)

    def _xattrs(self, info: tarfile.TarInfo, target: int | str) -> None:
        if not self.options.xattrs:
            return
        wanted = dict(_xattrs_of(info))
        follow = isinstance(target, int)  # an fd cannot be combined with follow_symlinks=False
        try:
            for name in os.listxattr(target, follow_symlinks=follow):
                if name not in wanted and name not in IGNORED_XATTRS:
                    os.removexattr(target, name, follow_symlinks=follow)
        except OSError as exc:
            self._xattr_failed(info.name, "clearing xattrs", exc)
        for name, value in wanted.items():
            if name in IGNORED_XATTRS:
                self.stats.xattrs_skipped += 1
                self.stats.warn(f"ignored xattr {name!r} on {info.name!r}")
                continue
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as exc:
                self.stats.xattrs_skipped += 1
                self._xattr_failed(info.name, f"setting xattr {name!r}", exc)

    def _xattr_failed(self, name: str, doing: str, exc: OSError) -> None:
        if exc.errno not in _XATTR_SKIP_ERRNOS:
            raise exc
        if exc.errno not in self.xattr_warned:
            self.xattr_warned.add(exc.errno or 0)
            self.stats.warn(
                f"{doing} on {name!r} failed ({exc.strerror}); "
                "continuing, further failures of this kind are only counted"
            )

    # -- bookkeeping ------------------------------------------------------------------

    def _note_explicit(self, key: str, name: str) -> None:
        if key in self.explicit:
            self.stats.duplicates += 1
            self.stats.warn(f"duplicate path {name!r} in one layer; the later entry wins")
        self.explicit.add(key)

    def _on_mkdir(self, parent_fd: int, parent_path: tuple[str, ...], name: str) -> None:
        self._touch(parent_fd, parent_path)
        self._mark_upper((*parent_path, name))

    def _touch(self, dir_fd: int, dir_path: tuple[str, ...]) -> None:
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

    def _mark_upper(self, full: tuple[str, ...]) -> None:
        for i in range(len(full), 0, -1):
            key = "/".join(full[:i])
            if key in self.upper:
                break
            self.upper.add(key)

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
                raise _os_error(key or ".", exc) from None
            finally:
                os.close(fd)

    def _open_dir(self, key: str) -> int:
        """Open a directory by its real path, following no symlink at all: if a component
        was replaced by a symlink later in the layer, the key names nothing any more."""
        fd = os.dup(self.root_fd)
        for part in key.split("/") if key else ():
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            finally:
                os.close(fd)
            fd = child
        return fd


def _xattrs_of(info: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in info.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            yield key[len("SCHILY.xattr.") :], value.encode("utf-8", "surrogateescape")


def _times(info: tarfile.TarInfo) -> tuple[int, int]:
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


def _os_error(name: str, exc: OSError) -> OccystrapError:
    message = f"cannot extract {name!r}: {exc.strerror or exc}"
    if exc.errno in _BAD_INPUT_ERRNOS:
        return MalformedInput(message)
    return OutputError(message)
