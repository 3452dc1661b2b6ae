"""exclude: remove entries matching globs from every layer.

Patterns follow :mod:`occystrap.tario.paths` (``**`` crosses directories, a pattern without
``/`` matches a basename at any depth), and a pattern that matches a directory removes its
whole subtree, at the top level too. Whiteouts go with what they delete: ``dir/.wh.x`` is
dropped when ``dir/x`` is excluded, ``dir/.wh..wh..opq`` when ``dir`` is. Untouched entries
keep their exact header bytes, so a layer where nothing matches is passed on unchanged.

Hardlinks (OCI layer spec): a link whose target was removed from the same layer becomes a
regular file carrying the content and the target's metadata (xattrs included); later links
to that target point at the new file. Removed file bodies are therefore copied to one
anonymous temporary file per layer (disk, never memory; in the run's ``--temp-dir``),
dropped at the layer's end. A link
whose target matches a pattern but is not in this layer (a lower layer's file, whose content
this layer does not carry) is removed with a warning rather than left dangling.
"""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
from collections.abc import Iterator
from typing import IO

from ..errors import InvalidOption, OutputError
from ..tario.entry import TarEntry
from ..tario.paths import WHITEOUT_META_PREFIX, glob_test, normalize, whiteout_target
from ..tario.writer import copy_info
from .base import LayerView, PassThrough
from .options import ExcludeOptions

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_MAX_ALIASES = 64  # hops when a removed link names another removed link


class Exclude(PassThrough):
    name = "exclude"
    rewrites_layers = True

    def __init__(self, options: ExcludeOptions) -> None:
        patterns = tuple(p for p in options.pattern if p.strip())
        if not patterns:
            raise InvalidOption("filter exclude needs at least one pattern=GLOB")
        self.patterns = patterns
        self._tests = [glob_test(p, subtree=True) for p in patterns]

    def excluded(self, path: str) -> bool:
        """Is the normalized member ``path`` removed (it or a parent directory matches)?"""
        return bool(path) and any(test(path) for test in self._tests)

    def subject(self, path: str) -> str:
        """The path an entry stands for: a whiteout's target, a marker's directory."""
        target = whiteout_target(path)
        if target is not None:
            return target
        head, _, base = path.rpartition("/")
        return head if base.startswith(WHITEOUT_META_PREFIX) else path

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        return _LayerExclusion(self, layer).run(entries)


class _LayerExclusion:
    """The state of one layer: removed files (spooled) and where their links now point."""

    def __init__(self, owner: Exclude, layer: LayerView) -> None:
        self.owner = owner
        self.layer = layer
        self.spool: IO[bytes] | None = None
        self.spool_size = 0
        #: removed regular file -> (its header, offset and size of its body in the spool)
        self.removed: dict[str, tuple[tarfile.TarInfo, int, int]] = {}
        #: removed hardlink -> the path it named
        self.aliases: dict[str, str] = {}
        #: removed file -> the kept path that now carries its content
        self.moved: dict[str, str] = {}

    def run(self, entries: Iterator[TarEntry]) -> Iterator[TarEntry]:
        try:
            for entry in entries:
                info = entry.info
                if info.type == tarfile.XGLTYPE:
                    yield entry
                    continue
                path = normalize(info.name)
                if self.owner.excluded(self.owner.subject(path)):
                    self._remove(path, entry)
                    continue
                if info.islnk():
                    kept = self._link(path, entry)
                    if kept is None:
                        continue
                    entry = kept
                yield entry
        finally:
            if self.spool is not None:
                self.spool.close()

    def _remove(self, path: str, entry: TarEntry) -> None:
        info = entry.info
        if info.islnk():
            self.aliases[path] = normalize(info.linkname)
        elif not info.isdir():  # files, symlinks, fifos and devices may be linked to
            size = info.size if info.isreg() else 0
            self.removed[path] = (info, self._save(entry) if size else 0, size)
            self.moved.pop(path, None)

    def _save(self, entry: TarEntry) -> int:
        """Append the entry's body to the spool; return where it starts."""
        start = self.spool_size
        size = entry.info.size
        if not size:
            return start
        if self.spool is None:
            try:
                self.spool = tempfile.TemporaryFile(
                    prefix="occystrap-exclude-", dir=self.layer.temp_dir
                )
            except OSError as e:
                raise OutputError(
                    f"exclude: cannot create a temporary file: {e.strerror}"
                ) from None
        body = entry.body
        left = size
        while left:
            data = body.read(min(left, _CHUNK))
            if not data:
                break  # the reader raises for a truncated member; nothing more to save
            try:
                self.spool.write(data)
            except OSError as e:
                raise OutputError(f"exclude: cannot write a temporary file: {e.strerror}") from None
            left -= len(data)
        self.spool_size += size - left
        return start

    def _resolve(self, target: str) -> str:
        for _ in range(_MAX_ALIASES):
            if target not in self.aliases:
                break
            target = self.aliases[target]
        return target

    def _link(self, path: str, entry: TarEntry) -> TarEntry | None:
        """A kept hardlink: unchanged, pointed at the new holder, or made a copy of its target."""
        named = normalize(entry.info.linkname)
        target = self._resolve(named)
        if target in self.moved:
            return _relinked(entry, self.moved[target])
        if target in self.removed:
            self.moved[target] = entry.info.name
            return self._as_copy(entry, *self.removed[target])
        if self.owner.excluded(target):
            log.warning(
                "layer %d: removed hardlink %s: its target %s is excluded and not in this layer",
                self.layer.index,
                path,
                target,
            )
            return None
        return entry if target == named else _relinked(entry, target)

    def _as_copy(self, link: TarEntry, info: tarfile.TarInfo, start: int, size: int) -> TarEntry:
        """The removed target's header (type, mode, owners, xattrs) at the link's path."""
        new = copy_info(info)
        new.name = link.info.name
        new.size = size
        new.pax_headers = {k: v for k, v in info.pax_headers.items() if k != "path"}
        if self.spool is not None:
            try:
                self.spool.flush()
            except OSError as e:
                raise OutputError(f"exclude: cannot write a temporary file: {e.strerror}") from None
        return TarEntry(new, None, _SpoolBody(self.spool, start, size))


def _relinked(entry: TarEntry, target: str) -> TarEntry:
    new = copy_info(entry.info)
    new.linkname = target
    new.pax_headers = {k: v for k, v in new.pax_headers.items() if k != "linkpath"}
    return TarEntry(new, None, entry.body)


class _SpoolBody:
    """``size`` bytes of the spool from ``start``, read with pread (no shared position)."""

    def __init__(self, spool: IO[bytes] | None, start: int, size: int) -> None:
        self._fd = spool.fileno() if spool is not None else -1
        self._pos = start
        self.remaining = size

    def read(self, n: int = -1, /) -> bytes:
        if n < 0 or n > self.remaining:
            n = self.remaining
        if not n:
            return b""
        data = os.pread(self._fd, n, self._pos)
        self._pos += len(data)
        self.remaining -= len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)
