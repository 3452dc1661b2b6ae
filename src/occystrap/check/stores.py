"""Raw, unverified access to the blobs of an OCI layout, on disk or inside a tar archive.

The transports verify everything they read and refuse broken images, which is right for
copying but hides what is wrong. ``check`` reads blobs through these stores instead, and
does the verifying itself so it can report each defect by name. Small documents are read
whole (capped at :data:`MAX_DOCUMENT` bytes); layers are opened as streams.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO, Protocol

from ..blobio.readers import Reader, read_full
from ..errors import LimitExceeded, MalformedInput
from ..model.digest import Digest
from ..transports.dockerarchive.members import Member, MemberTable
from ..transports.dockerarchive.source import PreadReader

MAX_DOCUMENT = 64 * 1024 * 1024


class BlobStore(Protocol):
    what: str

    def size(self, digest: Digest) -> int | None:
        """The stored size of the blob, None when it is absent."""

    def read(self, digest: Digest) -> bytes:
        """A small blob's bytes (LimitExceeded over MAX_DOCUMENT)."""

    def open(self, digest: Digest) -> AbstractContextManager[Reader]:
        """Stream the blob's stored bytes."""


def _too_big(what: str, size: int) -> LimitExceeded:
    return LimitExceeded(f"{what} is {size} bytes, over the {MAX_DOCUMENT}-byte limit")


class LayoutStore:
    """``blobs/<alg>/<hex>`` under a layout directory."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.what = root

    def path(self, digest: Digest) -> str:
        return os.path.join(self.root, "blobs", digest.algorithm, digest.encoded)

    def size(self, digest: Digest) -> int | None:
        try:
            st = os.stat(self.path(digest))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise MalformedInput(
                f"cannot read blob {digest} in {self.root}: {e.strerror}"
            ) from None
        return st.st_size

    def _file(self, digest: Digest) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except OSError as e:
            raise MalformedInput(
                f"cannot read blob {digest} in {self.root}: {e.strerror}"
            ) from None

    def read(self, digest: Digest) -> bytes:
        with self._file(digest) as f:
            data = read_full(f, MAX_DOCUMENT + 1)
        if len(data) > MAX_DOCUMENT:
            raise _too_big(f"blob {digest}", len(data))
        return data

    @contextmanager
    def open(self, digest: Digest) -> Iterator[Reader]:
        with self._file(digest) as f:
            yield f


class ArchiveStore:
    """Members of a seekable tar archive, by path or as ``blobs/<alg>/<hex>``."""

    def __init__(self, f: BinaryIO, table: MemberTable, what: str) -> None:
        self._fd = f.fileno()
        self.table = table
        self.what = what

    def member(self, path: str) -> Member | None:
        return self.table.resolve(path, "archive member")

    def _blob(self, digest: Digest) -> Member | None:
        return self.member(f"blobs/{digest.algorithm}/{digest.encoded}")

    def size(self, digest: Digest) -> int | None:
        member = self._blob(digest)
        return None if member is None else member.size

    def read_member(self, member: Member, what: str) -> bytes:
        if member.size > MAX_DOCUMENT:
            raise _too_big(what, member.size)
        return read_full(PreadReader(self._fd, member.offset, member.size), member.size)

    def read(self, digest: Digest) -> bytes:
        member = self._blob(digest)
        if member is None:
            raise MalformedInput(f"blob {digest} is missing from {self.what}")
        return self.read_member(member, f"blob {digest}")

    def stream(self, member: Member) -> Reader:
        """A layer member's bytes, streamed."""
        return PreadReader(self._fd, member.offset, member.size)

    @contextmanager
    def open(self, digest: Digest) -> Iterator[Reader]:
        member = self._blob(digest)
        if member is None:
            raise MalformedInput(f"blob {digest} is missing from {self.what}")
        yield self.stream(member)
