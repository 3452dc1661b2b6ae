"""Events the library reports while it works; the CLI decides how to show them.

The library never prints. Everything an operator may want to see (notices, progress,
per-layer outcomes) goes to a :class:`Reporter`; :class:`NullReporter` ignores it all.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol


class Reporter(Protocol):
    def notice(self, text: str) -> None:
        """A one-line remark worth showing (e.g. which image of an archive was picked)."""

    def result(self, text: str) -> None:
        """A line of output the user asked for (search hits); goes to stdout in the CLI."""

    def layer_started(self, index: int, label: str, total: int | None) -> None: ...

    def layer_progress(self, index: int, nbytes: int) -> None: ...

    def layer_finished(self, index: int, outcome: str) -> None:
        """``outcome`` is 'copied', 'rewritten', 'skipped' (already present) or 'mounted'."""


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
    bytes_read: int = 0
    bytes_written: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)
