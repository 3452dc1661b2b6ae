"""``tar://PATH`` and ``tar://-`` as a source: docker-save archives of every era.

A seekable, uncompressed file is indexed in one pass over its headers (bodies are seeked
over) and its layers are then read at random, in parallel if the engine wants (each read
uses ``os.pread`` on one shared descriptor, so reads never disturb each other). Standard
input and gzip/zstd-wrapped archives are read once, front to back, by :class:`ArchiveStream`
(``Image.sequential``). Every layer read is verified: by its stored digest and size, which
for an uncompressed layer is the config's diff_id.

A wrapped archive's decompressed size is capped (:mod:`occystrap.bounds`): by the file's size
when it is a regular file (standard input redirected from one included), else, from a pipe,
by the compressed bytes read so far, checked as it goes.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from ...blobio.compression import Compression, decompressing_reader, detect
from ...blobio.readers import ChainReader, Reader, ReaderBase, read_full
from ...bounds import expansion_limit
from ...errors import ImageNotFound, InvalidReference, LimitExceeded, MalformedInput, OccystrapError
from ...events import Stats
from ...image import Image, Opener
from ...model.digest import Digest
from ...model.jsonfile import MAX_JSON_BYTES
from ..base import RunContext
from .checks import CountingReader, checked
from .members import Member, MemberTable, index_seekable
from .options import TarSourceOptions
from .reader import LayerRef, Plan, build_plan, image_from_plan
from .stream import ArchiveStream

log = logging.getLogger(__name__)


@contextmanager
def open_source(target: str, options: TarSourceOptions, ctx: RunContext) -> Iterator[Image]:
    """The image picked by ``?image=``/``?index=`` (else the first) of the archive ``target``."""
    label = f"tar://{target}"
    if target == "-":
        if sys.stdin.isatty():
            raise InvalidReference(
                "tar://- reads an archive from standard input, which is a terminal"
            )
        size = _regular_size(sys.stdin.fileno())
        with _from_stream(sys.stdin.buffer, options, ctx, label, size) as image:
            yield image
        return
    path = os.path.expanduser(target)
    f = open_archive(path, label)
    try:
        size = _regular_size(f.fileno())
        head = read_full(f, 4)
        if size is None or detect(head) is not Compression.NONE:
            with _from_stream(ChainReader(head, f), options, ctx, label, size) as image:
                yield image
            return
        if not head:
            raise MalformedInput(f"{label} is empty")
        table = index_seekable(f, label)
        contents = FileContents(f, table, label)
        plan = build_plan(contents, options.image, options.index)
        _notice(plan, ctx, label)

        def opener(ref: LayerRef) -> Opener:
            member = table.resolve(ref.paths[0], f"layer {ref.index}")
            assert member is not None  # build_plan checked every layer path
            return lambda: _open_member(f, member, ref, label, ctx.stats)

        yield image_from_plan(plan, opener, label, sequential=False)
    finally:
        f.close()


def open_archive(path: str, label: str) -> BinaryIO:
    """``path`` opened unbuffered, or a one-line error naming ``label``."""
    try:
        return open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise ImageNotFound(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImageNotFound(
            f"{label} is a directory (an OCI layout is read with ocidir://)"
        ) from None
    except OSError as e:
        raise OccystrapError(f"cannot read {label}: {e.strerror}") from None


def _regular_size(fd: int) -> int | None:
    """The size of the file open as ``fd`` when it is a regular file (else a pipe etc.)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


@contextmanager
def _from_stream(
    raw: Reader, options: TarSourceOptions, ctx: RunContext, label: str, size: int | None
) -> Iterator[Image]:
    """Read the archive ``raw`` once; ``size`` is its stored size when known."""
    head = read_full(raw, 4)
    if not head:
        raise MalformedInput(f"{label} is empty")
    compression = detect(head)
    reader: Reader = ChainReader(head, raw)
    if compression is not Compression.NONE:
        log.debug("%s is %s-compressed as a whole", label, compression)
        if size is None:
            reader = RunningCap(reader, compression, label)
        else:
            limit = expansion_limit(size)
            reader = decompressing_reader(reader, compression, limit=limit, what=label)
    with ArchiveStream(reader, what=label, temp_dir=ctx.temp_dir, stats=ctx.stats) as archive:
        plan = archive.plan(options.image, options.index)
        _notice(plan, ctx, label)
        yield image_from_plan(plan, archive.opener, label, sequential=True)
        archive.finish()


def _notice(plan: Plan, ctx: RunContext, label: str) -> None:
    if plan.count > 1 and plan.picked_by_default:
        ctx.reporter.notice(
            f"{label} holds {plan.count} images; using the first ({plan.entry_label}); "
            "pick another with ?image=NAME:TAG or ?index=N"
        )


class RunningCap(ReaderBase):
    """The decompressed bytes of a compressed stream of unknown size (a pipe), capped as it
    goes by :func:`~occystrap.bounds.expansion_limit` of the compressed bytes read so far."""

    def __init__(self, raw: Reader, compression: Compression, what: str) -> None:
        self._counted = CountingReader(raw)
        self._source = decompressing_reader(self._counted, compression, what=what)
        self._what = what
        self._total = 0

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return self.readall()
        assert self._source is not None
        data = self._source.read(size)
        self._total += len(data)
        limit = expansion_limit(self._counted.count)
        if limit is not None and self._total > limit:
            raise LimitExceeded(
                f"decompressed data in {self._what} exceeds the limit of {limit} bytes "
                f"for the {self._counted.count} compressed bytes read so far"
            )
        return data


class FileContents:
    """The members of a seekable archive, read with ``os.pread``."""

    complete = True

    def __init__(self, f: BinaryIO, table: MemberTable, what: str) -> None:
        self._fd = f.fileno()
        self._table = table
        self.what = what

    def resolve(self, path: str, what: str = "path") -> Member | None:
        return self._table.resolve(path, what)

    def read_small(self, member: Member, what: str) -> bytes:
        if member.size > MAX_JSON_BYTES:
            raise LimitExceeded(
                f"{what} is {member.size} bytes, over the {MAX_JSON_BYTES}-byte limit"
            )
        return read_full(PreadReader(self._fd, member.offset, member.size), member.size)

    def head(self, member: Member) -> bytes:
        return os.pread(self._fd, min(4, member.size), member.offset)

    def digest(self, member: Member) -> Digest | None:
        return None


class PreadReader(ReaderBase):
    """``size`` bytes of ``fd`` from ``offset``; positionless, so any number can share a fd."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd = fd
        self._pos = offset
        self.remaining = size

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        if size == 0:
            return b""
        parts = []
        while size > 0:
            data = os.pread(self._fd, size, self._pos)
            if not data:
                raise MalformedInput("archive member ends early (file shrank while being read?)")
            parts.append(data)
            self._pos += len(data)
            self.remaining -= len(data)
            size -= len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readall(self) -> bytes:
        return read_full(self, self.remaining)

    def close(self) -> None:
        self.closed = True  # the descriptor belongs to open_source


@contextmanager
def _open_member(
    f: BinaryIO, member: Member, ref: LayerRef, what: str, stats: Stats
) -> Iterator[BinaryIO]:
    if f.closed:
        raise OccystrapError(f"{what} was closed before layer {ref.index} was read")
    reader = CountingReader(PreadReader(f.fileno(), member.offset, member.size))
    head = os.pread(f.fileno(), min(4, member.size), member.offset)
    try:
        with checked(reader, head, ref, what, member.size) as stream:
            yield stream
    finally:
        stats.add(bytes_read=reader.count)
