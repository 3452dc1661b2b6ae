"""Temporary and atomic files: spool a stream to disk once, write outputs safely.

``spool`` copies a stream into a temporary file and computes its digest and size
in the same pass; the file disappears on ``close()``. ``atomic_write`` gives a
file that appears at its final path only when the writing succeeded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO

from ..closing import Closing
from ..errors import OutputError
from ..model.digest import Digest
from .readers import CHUNK, Reader, read_chunk

log = logging.getLogger(__name__)


#: Where an unnamed temporary file is opened again by a reader of its own.
_FD_DIR = "/proc/self/fd"


class SpoolFile:
    """A new temporary file in ``temp_dir`` (the system's by default) to write once and
    then read any number of times; OutputError when it cannot be created or written.

    Where the system allows it (Linux with /proc), the file never has a name: nothing is
    left behind even when the process is killed. Elsewhere it is named and removed on
    ``close()``.
    """

    def __init__(self, temp_dir: str | None) -> None:
        unnamed = os.path.isdir(_FD_DIR)
        make = tempfile.TemporaryFile if unnamed else tempfile.NamedTemporaryFile
        try:
            self._tmp: IO[bytes] = make(
                mode="w+b", dir=temp_dir, prefix="occystrap-spool-", buffering=0
            )
        except OSError as e:
            where = temp_dir or tempfile.gettempdir()
            raise OutputError(f"cannot create a temporary file in {where}: {e.strerror}") from None
        self.path: str = f"{_FD_DIR}/{self._tmp.fileno()}" if unnamed else self._tmp.name
        self._label = f"temporary file in {temp_dir or tempfile.gettempdir()}"

    def write(self, data: bytes) -> None:
        """Write all of ``data`` (unbuffered writes may be partial)."""
        view = memoryview(data)
        write = self._tmp.write
        try:
            while view:
                view = view[write(view) :]
        except OSError as e:
            raise OutputError(f"cannot write a {self._label}: {e.strerror}") from None

    @property
    def closed(self) -> bool:
        return self._tmp.closed

    def close(self) -> None:
        self._tmp.close()


class SpooledBlob(Closing):
    """A stream saved to a temporary file; ``open()`` it as often as needed."""

    def __init__(self, tmp: SpoolFile, digest: Digest, size: int) -> None:
        self._tmp = tmp
        self.path: str = tmp.path
        self.digest = digest
        self.size = size

    @property
    def closed(self) -> bool:
        return self._tmp.closed

    def open(self) -> BinaryIO:
        """A fresh reader positioned at the first byte."""
        if self._tmp.closed:
            raise ValueError("spooled blob already closed")
        return open(self.path, "rb")

    def close(self) -> None:
        """Delete the temporary file (readers already open keep working on Linux)."""
        self._tmp.close()


def spool(reader: Reader, temp_dir: str | None = None, algorithm: str = "sha256") -> SpooledBlob:
    """Copy ``reader`` to a new temporary file in ``temp_dir``; hash and count it.

    Nothing is left behind if reading or writing fails. Failures to create or
    write the file raise OutputError; the reader's own errors pass through.
    """
    tmp = SpoolFile(temp_dir)
    try:
        h: Any = hashlib.new(algorithm)
        size = 0
        while data := read_chunk(reader):
            h.update(data)
            size += len(data)
            tmp.write(data)
    except BaseException:
        tmp.close()
        raise
    log.debug("spooled %d bytes", size)
    return SpooledBlob(tmp, Digest(algorithm, h.hexdigest()), size)


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[BinaryIO]:
    """Write ``path`` all or nothing.

    Yields a binary file named ``.<name>.tmp-<random>`` in the same directory; on
    success it is flushed (and fsynced with ``fsync=True``, the directory too) and
    renamed over ``path``. On any exception the temporary file is removed and the
    exception passes through. The new file gets the usual umask-based mode.
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    tmp_path = os.path.join(directory, f".{name}.tmp-{secrets.token_hex(6)}")
    try:
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise OutputError(f"cannot create {tmp_path}: {e.strerror}") from None
    f = os.fdopen(fd, "wb", buffering=CHUNK)
    try:
        yield f
        try:
            f.flush()
            if fsync:
                os.fsync(f.fileno())
            f.close()
            os.replace(tmp_path, path)
            if fsync:
                _fsync_dir(directory or ".")
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror}") from None
    except BaseException:
        try:
            f.close()
        except OSError:
            pass  # the original exception matters more
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
