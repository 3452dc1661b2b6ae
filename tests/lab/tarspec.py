"""Layer tar entries described in code (``TarSpec``) and a deterministic PAX tar writer.

Only the stdlib ``tarfile`` module is used, never occystrap's own code, so fixtures built from
these specs are independent evidence. Entries are written in the given order, byte for byte
the same on every run (fixed mtime, empty user/group names, PAX format). Names are written
exactly as given (``./x``, ``../x``, ``/x`` survive), which the hostile fixtures rely on.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

MTIME = 1_700_000_000
Kind = Literal["file", "dir", "symlink", "hardlink", "fifo", "chr", "blk"]

_TYPES: dict[str, bytes] = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
}
_DEFAULT_MODES = {"dir": 0o755, "symlink": 0o777}


@dataclass(frozen=True)
class TarSpec:
    """One tar entry. ``content`` (or ``source``, a file streamed in) is the body of a file.

    ``xattrs`` become PAX ``SCHILY.xattr.NAME`` records (binary values are allowed); ``pax``
    adds raw PAX records. ``mode`` defaults to 0644 (0755 for dirs, 0777 for symlinks).
    """

    name: str
    kind: Kind = "file"
    content: bytes = b""
    source: Path | None = None
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mtime: int = MTIME
    linkname: str = ""
    xattrs: Mapping[str, bytes] = field(default_factory=dict)
    pax: Mapping[str, str] = field(default_factory=dict)
    devmajor: int = 0
    devminor: int = 0

    @property
    def size(self) -> int:
        if self.kind != "file":
            return 0
        return self.source.stat().st_size if self.source else len(self.content)


def file(
    name: str,
    content: bytes | str = b"",
    mode: int = 0o644,
    *,
    uid: int = 0,
    gid: int = 0,
    mtime: int = MTIME,
    xattrs: Mapping[str, bytes] | None = None,
    pax: Mapping[str, str] | None = None,
    source: Path | None = None,
) -> TarSpec:
    """A regular file; ``source`` streams the body from a host file instead of ``content``."""
    data = content.encode() if isinstance(content, str) else content
    return TarSpec(
        name, "file", data, source, mode, uid, gid, mtime=mtime,
        xattrs=dict(xattrs or {}), pax=dict(pax or {}),
    )  # fmt: skip


def directory(
    name: str,
    mode: int = 0o755,
    *,
    uid: int = 0,
    gid: int = 0,
    mtime: int = MTIME,
    xattrs: Mapping[str, bytes] | None = None,
) -> TarSpec:
    return TarSpec(name, "dir", mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=dict(xattrs or {}))


def symlink(name: str, target: str, *, uid: int = 0, gid: int = 0) -> TarSpec:
    return TarSpec(name, "symlink", linkname=target, uid=uid, gid=gid)


def hardlink(name: str, target: str, *, mode: int = 0o644, uid: int = 0, gid: int = 0) -> TarSpec:
    """A hard link entry; ``target`` is an archive path (same layer or a lower one)."""
    return TarSpec(name, "hardlink", linkname=target, mode=mode, uid=uid, gid=gid)


def fifo(name: str, mode: int = 0o644) -> TarSpec:
    return TarSpec(name, "fifo", mode=mode)


def device(name: str, major: int, minor: int, kind: Literal["chr", "blk"] = "chr") -> TarSpec:
    return TarSpec(name, kind, mode=0o666, devmajor=major, devminor=minor)


def whiteout(path: str) -> TarSpec:
    """``dir/.wh.name``: deletes ``dir/name`` from lower layers."""
    parent, base = posixpath.split(path.rstrip("/"))
    return TarSpec(posixpath.join(parent, ".wh." + base), "file", mode=0o644)


def opaque(dirpath: str) -> TarSpec:
    """``dir/.wh..wh..opq``: hides everything lower layers put in ``dir``."""
    return TarSpec(posixpath.join(dirpath.rstrip("/"), ".wh..wh..opq"), "file", mode=0o644)


def tarinfo(spec: TarSpec) -> tarfile.TarInfo:
    """The ``TarInfo`` for ``spec`` (name kept verbatim)."""
    info = tarfile.TarInfo(spec.name)
    info.type = _TYPES[spec.kind]
    info.mode = spec.mode if spec.mode is not None else _DEFAULT_MODES.get(spec.kind, 0o644)
    info.uid, info.gid = spec.uid, spec.gid
    info.uname, info.gname = spec.uname, spec.gname
    info.mtime = spec.mtime
    info.linkname = spec.linkname
    info.size = spec.size
    info.devmajor, info.devminor = spec.devmajor, spec.devminor
    pax = {
        f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in spec.xattrs.items()
    }
    pax.update(spec.pax)
    info.pax_headers = pax
    return info


def write_tar(specs: Iterable[TarSpec], out: IO[bytes]) -> None:
    """Write ``specs`` as one PAX tar stream to the binary file ``out``."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for spec in specs:
            info = tarinfo(spec)
            if spec.kind == "file" and spec.source is not None:
                with open(spec.source, "rb") as body:
                    tar.addfile(info, body)
            elif spec.kind == "file":
                tar.addfile(info, io.BytesIO(spec.content))
            else:
                tar.addfile(info)


def sha256_file(path: Path) -> str:
    """``sha256:HEX`` of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def write_layer_tar(specs: Iterable[TarSpec], path: Path | str) -> str:
    """Write an uncompressed layer tar to ``path``; return its digest (the layer's diff_id)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        write_tar(specs, out)
    return sha256_file(path)


def tar_bytes(specs: Iterable[TarSpec]) -> bytes:
    """A small tar in memory (only for tiny fixtures)."""
    buf = io.BytesIO()
    write_tar(specs, buf)
    return buf.getvalue()
