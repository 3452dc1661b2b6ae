"""Checking that a stream is a well-formed tar while the caller reads it for another purpose.

Outputs that store plain layer tars (``tar://``, ``dir://``) would otherwise copy a layer
that is not a tar at all, or one cut short with a matching digest, into an image that looks
complete. :func:`checked_tar` parses a copy of the stream in a second thread (headers only,
bodies skipped, as :func:`~occystrap.tario.reader.iter_entries` does) and turns the first
parse error into an exception from the caller's next read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, Protocol, cast

from ..blobio.tee import Tap, observe_copy
from .reader import iter_entries


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Checked:
    """Reads pass through; a parse error found so far is raised instead of the data."""

    def __init__(self, inner: BinaryIO, tap: Tap) -> None:
        self._inner = inner
        self._tap = tap

    def read(self, n: int = -1, /) -> bytes:
        data = self._inner.read(n)
        self._tap.raise_error()
        return data


@contextmanager
def checked_tar(stream: Readable, what: str = "layer") -> Iterator[Readable]:
    """``stream`` unchanged, checked as tar on the side; MalformedInput (or LimitExceeded)
    from a read, or on leaving the block, when it is not a well-formed tar."""

    def parse(copy: BinaryIO) -> None:
        for _ in iter_entries(copy, what=what):
            pass

    with observe_copy(parse) as tap:
        yield _Checked(tap.wrap(cast(BinaryIO, stream)), tap)
