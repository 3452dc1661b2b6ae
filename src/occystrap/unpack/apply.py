"""Apply image layers (tar changesets) to a root directory, as the OCI image-spec layer.md says.

Rules, in the order a reader meets them:

* Names are normalised (``./a//b/`` is ``a/b``); absolute names, NUL bytes and ``..`` that
  climbs above the root are refused (:func:`safepath.split_name`). Every path is reached
  through :mod:`safepath`, so nothing is ever written through a symlink that leaves the root.
* Whiteouts and opaque directories: :mod:`.whiteouts`.
* Changesets: a directory over a directory keeps it and replaces its attributes; anything
  else unlinks (or removes the tree) and recreates.
* Metadata (owner, mode, xattrs, times): :mod:`.metadata`. Hardlinks share their target's
  inode and get no metadata of their own. Directory modes and times are deferred to the
  end of the layer (:mod:`.state`).
* Duplicate paths in one layer: the later entry wins and a warning is counted.
* Devices follow ``ApplyOptions.devices`` (create when privileged, skip, or refuse).
  Rootless (``OwnershipPolicy(privileged=False)``): no chown, no mknod (both counted).
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable
from typing import BinaryIO

from ..errors import MalformedInput, OutputError, UnsafeArchiveEntry
from ..tario.entry import TarEntry
from .metadata import MetadataWriter, entry_times
from .ownership import ApplyOptions, DevicePolicy
from .safepath import Missing, Parent, resolve_parent, split_name
from .state import DIR_FLAGS, LayerState, os_error
from .stats import MAX_WARNINGS, LayerStats
from .whiteouts import apply_whiteout, in_aufs_meta, is_whiteout, remove

__all__ = ["MAX_WARNINGS", "ApplyOptions", "LayerStats", "apply_layer", "apply_layers"]

CHUNK = 1 << 20
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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
            applier.state.finish()
        finally:
            applier.state.forget_parents()
        return applier.state.stats
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
        self.state = LayerState(root_fd, options)
        self.stats = self.state.stats
        self.options = options
        self.meta = MetadataWriter(options, self.stats)
        self.buffer = memoryview(bytearray(CHUNK))

    def apply(self, entry: TarEntry) -> None:
        if entry.info.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
            return  # PAX header records a reader chose to show us: not a path
        self.stats.entries += 1
        name = entry.info.name
        try:
            parts = split_name(name)
            if in_aufs_meta(parts):
                return
            if is_whiteout(parts):
                apply_whiteout(self.state, name, parts)
            elif not parts:
                self._root(entry)
            else:
                self._create(entry, parts)
        except OSError as exc:
            raise os_error(name, exc) from None
        except (OverflowError, ValueError) as exc:  # e.g. an absurd uid or mtime, a NUL in a link
            raise MalformedInput(f"cannot extract {name!r}: {exc}") from None

    def _root(self, entry: TarEntry) -> None:
        if not entry.info.isdir():
            raise UnsafeArchiveEntry(entry.info.name, "refusing to change the type of the root")
        self.state.note_explicit("", entry.info.name)
        self.stats.directories += 1
        self.meta.owner_and_xattrs(entry.info, fd=self.state.root_fd)
        self.state.dir_meta[""] = (entry.info.mode & 0o7777, *entry_times(entry.info))

    def _create(self, entry: TarEntry, parts: tuple[str, ...]) -> None:
        info = entry.info
        if (info.ischr() or info.isblk()) and not self._device_allowed(info.name):
            return
        link_parts = split_name(info.linkname) if info.islnk() else ()
        if info.islnk() and not link_parts:
            raise MalformedInput(f"hardlink {info.name!r} points at the root directory")
        self._create_in(entry, self.state.parent_of(parts, info.name), link_parts)

    def _create_in(self, entry: TarEntry, parent: Parent, link_parts: tuple[str, ...]) -> None:
        info, pfd, base, key = entry.info, parent.fd, parent.name, parent.key
        self.state.note_explicit(key, info.name)
        self.state.touch(pfd, parent.path)
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
            self.state.dir_meta.pop(key, None)
            if existing is not None:
                remove(self.state, pfd, base, existing)
            if info.isreg():
                self._make_file(entry, pfd, base)
            elif info.issym():
                os.symlink(info.linkname, base, dir_fd=pfd)
                self.stats.symlinks += 1
                self.meta.path_metadata(info, pfd, base, symlink=True)
            elif info.isfifo():
                os.mkfifo(base, 0o600, dir_fd=pfd)
                self.stats.fifos += 1
                self.meta.path_metadata(info, pfd, base, symlink=False)
            elif info.ischr() or info.isblk():
                kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(info.devmajor, info.devminor), dir_fd=pfd)
                self.stats.devices += 1
                self.meta.path_metadata(info, pfd, base, symlink=False)
            else:
                raise MalformedInput(f"tar entry {info.name!r} has unsupported type {info.type!r}")
        self.state.mark_upper((*parent.path, base))

    def _make_dir(
        self, info: tarfile.TarInfo, pfd: int, base: str, key: str, existing: os.stat_result | None
    ) -> None:
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            remove(self.state, pfd, base, existing)
            existing = None
        if existing is None:
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, DIR_FLAGS, dir_fd=pfd)
        try:
            self.meta.owner_and_xattrs(info, fd=fd)
        finally:
            os.close(fd)
        self.stats.directories += 1
        self.state.dir_meta[key] = (info.mode & 0o7777, *entry_times(info))

    def _make_hardlink(
        self,
        info: tarfile.TarInfo,
        pfd: int,
        base: str,
        key: str,
        existing: os.stat_result | None,
        link_parts: tuple[str, ...],
    ) -> bool:
        missing = f"hardlink {info.name!r}: target {info.linkname!r} is missing"
        try:
            target = resolve_parent(
                self.state.root_fd, link_parts, create_dirs=False, label=info.name
            )
        except Missing:
            raise MalformedInput(missing) from None
        try:
            try:
                tst = os.stat(target.name, dir_fd=target.fd, follow_symlinks=False)
            except FileNotFoundError:
                raise MalformedInput(missing) from None
            if stat.S_ISDIR(tst.st_mode):
                raise MalformedInput(
                    f"hardlink {info.name!r}: target {info.linkname!r} is a directory"
                )
            if target.key == key:
                self.stats.warn(f"skipped hardlink {info.name!r} to itself")
                return False
            self.state.dir_meta.pop(key, None)
            if existing is not None:
                remove(self.state, pfd, base, existing)
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
            self.meta.owner_and_xattrs(entry.info, fd=fd, mode=True)
            os.utime(fd, ns=entry_times(entry.info))
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
