"""Events the library reports while it works; the CLI decides how to show them.

The library never prints. Everything an operator may want to see (notices, progress,
per-layer outcomes) goes to a :class:`Reporter`; :class:`NullReporter` ignores it all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .blobio.readers import Reader, ReaderBase


class Reporter(Protocol):
    def notice(self, text: str) -> None:
        """A one-line remark worth showing (e.g. which image of an archive was picked)."""

    def result(self, text: str) -> None:
        """A line of output the user asked for (search hits); goes to stdout in the CLI."""

    def layer_started(self, index: int, label: str, total: int | None) -> None:
        """Layer ``index`` of the current image starts; ``total`` is its stored size."""

    def layer_progress(self, index: int, nbytes: int) -> None:
        """``nbytes`` more of the layer's stored bytes were read (a delta, not a total)."""

    def layer_finished(self, index: int, outcome: str) -> None:
        """``outcome`` is 'copied', 'converted', 'rewritten', 'skipped' (already present),
        'mounted' (taken from another repository of the destination registry) or 'cached'
        (taken from the layer cache)."""


def image_started(reporter: Reporter, reference: str, sizes: Sequence[int | None]) -> None:
    """Tell ``reporter`` an image of ``len(sizes)`` layers starts, when it wants to know.

    ``image_started(reference, sizes)`` is an optional Reporter method (the CLI uses it for
    the overall total); reporters without it are not bothered.
    """
    started = getattr(reporter, "image_started", None)
    if callable(started):
        started(reference, list(sizes))


class NullReporter:
    def notice(self, text: str) -> None:
        pass

    def result(self, text: str) -> None:
        pass

    def layer_started(self, index: int, label: str, total: int | None) -> None:
        pass

    def layer_progress(self, index: int, nbytes: int) -> None:
        pass

    def layer_finished(self, index: int, outcome: str) -> None:
        pass


@dataclass
class Stats:
    """Counters for the summary line; thread-safe increments."""

    images: int = 0
    layers: int = 0
    layers_skipped: int = 0
    #: layers a registry mounted from another of its repositories (no byte sent)
    layers_mounted: int = 0
    #: layers taken from the layer cache (``--cache-dir``) instead of being produced again
    cache_hits: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)


class ProgressReader(ReaderBase):
    """Pass bytes through, telling ``reporter.layer_progress`` about them now and then.

    A report goes out once at least ``every`` bytes or ``interval`` seconds have passed
    since the last one, and at end of stream, so the cost stays one clock read per ``read``.
    """

    def __init__(
        self,
        reader: Reader,
        reporter: Reporter,
        index: int,
        every: int = 1 << 20,
        interval: float = 0.1,
    ) -> None:
        self._source = reader
        self._reporter = reporter
        self._index = index
        self._every = every
        self._interval = interval
        self._pending = 0
        self._last = time.monotonic()
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        assert self._source is not None
        data = self._source.read(size)
        n = len(data)
        if n:
            self.count += n
            self._pending += n
            if self._pending >= self._every:
                self.flush()
            else:
                now = time.monotonic()
                if now - self._last >= self._interval:
                    self.flush(now)
        elif self._pending:
            self.flush()
        return data

    def flush(self, now: float | None = None) -> None:
        """Report what was read since the last report."""
        self._last = time.monotonic() if now is None else now
        if self._pending:
            pending, self._pending = self._pending, 0
            self._reporter.layer_progress(self._index, pending)

    def close(self) -> None:
        if not self.closed:
            self.flush()
        super().close()
