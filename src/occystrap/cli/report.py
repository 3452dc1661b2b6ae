"""The CLI's Reporter: notices and the summary line on stderr; progress comes later."""

from __future__ import annotations

import sys
import threading

from ..events import Stats


class CliReporter:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._lock = threading.Lock()

    def notice(self, text: str) -> None:
        if not self.quiet and text:
            with self._lock:
                print(text, file=sys.stderr, flush=True)

    def result(self, text: str) -> None:
        """Output the user asked for (search hits): stdout, even when quiet."""
        with self._lock:
            print(text, flush=True)

    def layer_started(self, index: int, label: str, total: int | None) -> None:
        pass

    def layer_progress(self, index: int, nbytes: int) -> None:
        pass

    def layer_finished(self, index: int, outcome: str) -> None:
        pass

    def summary(self, text: str) -> None:
        self.notice(text)

    def close(self) -> None:
        pass


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def summary_line(stats: Stats, elapsed: float) -> str:
    rate = stats.bytes_read / elapsed if elapsed > 0 else 0.0
    return (
        f"Summary: {stats.images} image(s), {stats.layers} layer(s) ({stats.layers_skipped} already present), "
        f"read {_size(stats.bytes_read)}, wrote {_size(stats.bytes_written)}, {stats.retries} retries, "
        f"{elapsed:.1f}s, {_size(rate)}/s"
    )
