"""A deterministic outer tar writer for hand-made archives (docker-save tarballs and the like)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .ocilayout import canonical_json


class ArchiveWriter:
    """Deterministic outer tar (mtime 0, root-owned, 0644 files / 0755 dirs)."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar

    def _info(self, name: str, kind: bytes, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mode, info.mtime = kind, size, mode, 0
        return info

    def dir(self, name: str) -> None:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode=0o755))

    def data(self, name: str, data: bytes) -> None:
        self.tar.addfile(self._info(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))

    def json(self, name: str, obj: object) -> None:
        self.data(name, canonical_json(obj))

    def file(self, name: str, path: Path) -> None:
        with open(path, "rb") as f:
            self.tar.addfile(self._info(name, tarfile.REGTYPE, path.stat().st_size), f)

    def symlink(self, name: str, target: str) -> None:
        info = self._info(name, tarfile.SYMTYPE, mode=0o777)
        info.linkname = target
        self.tar.addfile(info)


@contextmanager
def open_archive(out: Path) -> Iterator[ArchiveWriter]:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        yield ArchiveWriter(tar)
