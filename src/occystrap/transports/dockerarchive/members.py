"""The members of an outer docker-save tar: safe names, links, and a seek-only index.

Names are cleaned once (``./a/b`` -> ``a/b``); a member whose name is absolute or climbs
out with ``..`` makes the whole archive unsafe. Symlinks and hard links (podman writes
``<id>/layer.tar -> ../<diffid>.tar``) are followed inside the archive only.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from ...errors import LimitExceeded, MalformedInput, UnsafeArchiveEntry
from ...model.digest import Digest

MAX_LINK_HOPS = 16
MAX_MEMBERS = 1_000_000
MAX_HEADER_READ = 16 << 20


@dataclass
class Member:
    """One member: ``kind`` is file, dir, symlink, hardlink or other; ``offset`` is where
    the body starts in a seekable archive (-1 in a stream); ``link`` is the cleaned target."""

    name: str
    kind: str
    size: int
    offset: int = -1
    link: str = ""


class NeedMore(Exception):
    """A stream has not shown enough members yet to answer; read on and ask again."""


class Contents(Protocol):
    """The members of an archive as far as they are known (seekable file or stream)."""

    what: str
    #: every member is known (a seekable file, or a stream read to its end)
    complete: bool

    def resolve(self, path: str, what: str = "path") -> Member | None: ...

    def read_small(self, member: Member, what: str) -> bytes: ...

    def head(self, member: Member) -> bytes | None:
        """The first bytes (at least 4, fewer if the member is shorter), None if unknown."""

    def digest(self, member: Member) -> Digest | None:
        """The digest of the member's body when it is already known without reading."""


def clean_name(raw: str, what: str = "the archive") -> str:
    """``raw`` as a relative archive path; UnsafeArchiveEntry if it is absolute or escapes."""
    if raw.startswith("/"):
        raise UnsafeArchiveEntry(raw, f"absolute path in {what}")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveEntry(raw, f"path with '..' in {what}")
    return "/".join(parts) or "."


def link_target(member_name: str, linkname: str, symbolic: bool) -> str:
    """The archive path a link points at (a symlink is relative to its directory)."""
    if linkname.startswith("/"):
        raise UnsafeArchiveEntry(member_name, f"link to absolute path {linkname!r}")
    joined = posixpath.join(posixpath.dirname(member_name), linkname) if symbolic else linkname
    norm = posixpath.normpath(joined)
    if norm == ".." or norm.startswith("../"):
        raise UnsafeArchiveEntry(member_name, f"link {linkname!r} points outside the archive")
    return clean_name(norm, f"the target of {member_name!r}")


def member_from_info(info: tarfile.TarInfo, what: str, offset: int = -1) -> Member:
    name = clean_name(info.name, what)
    if info.issym() or info.islnk():
        if not info.linkname:
            raise MalformedInput(f"archive member {name!r} is a link without a target")
        # Unsafe targets are kept as errors-to-be: only following them fails.
        try:
            target = link_target(name, info.linkname, info.issym())
        except UnsafeArchiveEntry as e:
            return Member(name, "unsafe", 0, offset, e.reason)
        return Member(name, "symlink" if info.issym() else "hardlink", 0, offset, target)
    if info.isreg() and not info.issparse():
        return Member(name, "file", info.size, offset)
    return Member(name, "dir" if info.isdir() else "other", 0, offset)


class MemberTable:
    """Members by cleaned name; a later member of the same name replaces an earlier one."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._members: dict[str, Member] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def add(self, member: Member) -> None:
        if len(self._members) >= MAX_MEMBERS:
            raise MalformedInput(f"{self.what} has more than {MAX_MEMBERS} members")
        self._members[member.name] = member

    def get(self, name: str) -> Member | None:
        return self._members.get(name)

    def names(self) -> list[str]:
        return list(self._members)

    def resolve(self, path: str, what: str = "path") -> Member | None:
        """The regular file ``path`` names, following links; None if it (or a link target) is
        not there. A link out of the archive raises UnsafeArchiveEntry, a loop MalformedInput."""
        name = clean_name(path, f"{what} of {self.what}")
        for _ in range(MAX_LINK_HOPS):
            member = self._members.get(name)
            if member is None:
                return None
            if member.kind == "unsafe":
                raise UnsafeArchiveEntry(member.name, member.link)
            if member.kind in ("symlink", "hardlink"):
                name = member.link
                continue
            if member.kind != "file":
                raise MalformedInput(f"{what} {path!r} in {self.what} is not a regular file")
            return member
        raise MalformedInput(f"{what} {path!r} in {self.what}: too many links (loop?)")


def index_seekable(f: BinaryIO, what: str) -> MemberTable:
    """Walk the headers of a seekable uncompressed tar (bodies are seeked over, not read)."""
    table = MemberTable(what)
    file_size = os.fstat(f.fileno()).st_size
    f.seek(0)
    try:
        guarded: Any = _Guard(f, what)
        tf = tarfile.open(fileobj=guarded, mode="r:", encoding="utf-8", errors="surrogateescape")
        while True:
            info = tf.next()
            if info is None:
                break
            member = member_from_info(info, what, info.offset_data)
            if member.kind == "file" and info.offset_data + info.size > file_size:
                raise MalformedInput(f"truncated tar {what}: member {member.name!r} ends early")
            table.add(member)
            tf.members.clear()  # type: ignore[attr-defined]  # keep memory flat on archives with many members
        end = tf.offset
    except (tarfile.TarError, ValueError, OverflowError, UnicodeError, EOFError) as e:
        raise MalformedInput(f"{what} is not a readable tar archive: {_reason(e)}") from None
    f.seek(end)
    tail = f.read(tarfile.BLOCKSIZE)
    if tail and tail != bytes(tarfile.BLOCKSIZE):
        raise MalformedInput(f"corrupt or truncated tar {what}: bad header at offset {end}")
    if not len(table):
        raise MalformedInput(f"{what} is an empty tar archive")
    return table


class _Guard:
    """Seek/read proxy that refuses huge single reads (hostile extended headers)."""

    def __init__(self, f: BinaryIO, what: str) -> None:
        self._f = f
        self._what = what

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > MAX_HEADER_READ:
            raise LimitExceeded(f"{self._what}: tar extended header over {MAX_HEADER_READ} bytes")
        return self._f.read(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:160]
