"""Where earlier pushes put each blob, per registry, so that a push can mount a blob from
another repository of its destination instead of uploading it again (as skopeo's
blob-info cache lets it do).

The directory (``RegistrySettings.locations_dir``, default
``$XDG_CACHE_HOME/occystrap/locations``) holds one small file per registry and blob,
``HOST/ALG-HEX``, whose lines are the repositories the blob was pushed to, newest last.
Each line is appended with a single ``write`` to a file opened with ``O_APPEND``, so runs
writing at once never mix their lines. A file that grows past :data:`MAX_FILE` bytes is
rewritten with its last :data:`KEEP` names; files untouched for :data:`MAX_AGE` seconds are
removed when a sink for that registry opens.

A name read back is only a hint: the registry checks the mount itself (``201``: mounted;
``202``: not possible, and the upload goes on in the session it opened), so a stale or
wrong name costs nothing. Names that do not fit the repository grammar are ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from urllib.parse import quote

from ...blobio.spool import atomic_write
from ...errors import InvalidReference, OutputError
from ...model.digest import Digest
from .reference import validate_repository

log = logging.getLogger(__name__)

#: A file is rewritten with its last KEEP names once it is this big.
MAX_FILE = 4096
KEEP = 8
#: Files untouched for this long are removed by the next sink for their registry.
MAX_AGE = 30 * 86400


def _valid(name: str) -> bool:
    try:
        validate_repository(name)
    except InvalidReference:
        return False
    return True


class BlobLocations:
    """The repositories of ``host`` that hold a blob, as this and earlier runs pushed them
    (``root`` None: nothing is remembered)."""

    def __init__(self, root: Path | None, host: str) -> None:
        self.dir = root / quote(host, safe="") if root is not None else None

    def _path(self, digest: Digest) -> Path | None:
        if self.dir is None or not digest.supported:
            return None
        return self.dir / f"{digest.algorithm}-{digest.encoded}"

    def where(self, digest: Digest, besides: str) -> str | None:
        """The repository that most recently received ``digest``, other than ``besides``."""
        path = self._path(digest)
        if path is None:
            return None
        try:
            text = path.read_text("utf-8", "replace")
        except OSError:
            return None
        for name in reversed(text.splitlines()):
            if name != besides and _valid(name):
                return name
        return None

    def note(self, digest: Digest, repository: str) -> None:
        """``repository`` holds ``digest`` now."""
        path = self._path(digest)
        if path is None or not _valid(repository):
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, f"{repository}\n".encode())
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > MAX_FILE:
                self._shorten(path)
        except (OSError, OutputError) as e:
            log.debug("cannot note where %s is: %s", digest, e)

    def _shorten(self, path: Path) -> None:
        names = list(dict.fromkeys(reversed(path.read_text("utf-8", "replace").splitlines())))
        with atomic_write(path) as f:
            f.write("".join(f"{n}\n" for n in reversed(names[:KEEP])).encode())

    def sweep(self) -> None:
        """Remove this registry's files untouched for MAX_AGE."""
        if self.dir is None:
            return
        cutoff = time.time() - MAX_AGE
        with contextlib.suppress(OSError), os.scandir(self.dir) as found:
            for item in found:
                with contextlib.suppress(OSError):
                    if item.is_file() and item.stat().st_mtime < cutoff:
                        os.unlink(item.path)
