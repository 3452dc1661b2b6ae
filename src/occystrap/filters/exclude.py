"""exclude: remove entries matching globs from every layer.

A pattern that matches a directory removes its whole subtree. A hardlink whose target was
removed becomes a regular file carrying the content (the OCI layer spec's rule); later
links to the same target then point at that new file. Removed regular files are spooled to
disk (never memory) only so that such a conversion is possible, and deleted at the layer's
end. A whiteout whose target matches is removed too: the path is excluded everywhere.
"""

from __future__ import annotations

import copy
import shutil
import tarfile
import tempfile
from collections.abc import Iterator

from ..blobio.readers import copy_stream
from ..errors import InvalidOption
from ..tario.entry import TarEntry
from ..tario.paths import is_opaque, matches_or_under, normalize, whiteout_target
from .base import LayerView, PassThrough
from .options import ExcludeOptions


class Exclude(PassThrough):
    name = "exclude"
    rewrites_layers = True

    def __init__(self, options: ExcludeOptions) -> None:
        if not options.pattern:
            raise InvalidOption("filter exclude needs at least one pattern=GLOB")
        self.patterns = options.pattern

    def _excluded(self, path: str) -> bool:
        return any(matches_or_under(p, path) for p in self.patterns)

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        spool_dir: str | None = None
        removed: dict[str, str | None] = {}  # removed regular file -> spool path (None: not spooled)
        relinked: dict[str, str] = {}  # removed target -> path now carrying its content
        try:
            for entry in entries:
                info = entry.info
                path = normalize(info.name)
                target = whiteout_target(path)
                check = target if target is not None and not is_opaque(path) else path
                if check and self._excluded(check):
                    if info.isreg():
                        if spool_dir is None:
                            spool_dir = tempfile.mkdtemp(prefix="occystrap-exclude-")
                        spooled = f"{spool_dir}/{len(removed)}"
                        with open(spooled, "wb") as out:
                            copy_stream(entry.body, out)
                        removed[path] = spooled
                    continue
                if info.islnk():
                    link = normalize(info.linkname)
                    if link in relinked:
                        new = copy.copy(info)
                        new.linkname = relinked[link]
                        entry.info, entry.raw_header = new, None
                    elif link in removed and removed[link] is not None:
                        yield self._as_regular(entry, str(removed[link]))
                        relinked[link] = info.name
                        continue
                yield entry
        finally:
            if spool_dir is not None:
                shutil.rmtree(spool_dir, ignore_errors=True)

    def _as_regular(self, entry: TarEntry, spooled: str) -> TarEntry:
        new = copy.copy(entry.info)
        new.type = tarfile.REGTYPE
        new.linkname = ""
        body = open(spooled, "rb")  # noqa: SIM115 - closed by the reader at EOF
        body.seek(0, 2)
        new.size = body.tell()
        body.seek(0)
        return TarEntry(new, None, _ClosingBody(body, new.size))


class _ClosingBody:
    def __init__(self, f: object, size: int) -> None:
        self._f = f
        self.remaining = size

    def read(self, n: int = -1, /) -> bytes:
        data: bytes = self._f.read(n if n >= 0 else self.remaining)  # type: ignore[attr-defined]
        self.remaining -= len(data)
        if not data or self.remaining <= 0:
            self._f.close()  # type: ignore[attr-defined]
        return data

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        count: int = self._f.readinto(buffer)  # type: ignore[attr-defined]
        self.remaining -= count
        if not count or self.remaining <= 0:
            self._f.close()  # type: ignore[attr-defined]
        return count
