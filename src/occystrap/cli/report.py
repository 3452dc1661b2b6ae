"""The CLI's Reporter: notices, progress and the summary line on stderr; results on stdout.

Everything here goes to stderr except :meth:`CliReporter.result` (search hits), so an image
written to stdout (``tar://-``) or ``--json`` output stays clean. When the image itself goes
to stdout, results go to stderr too (``results_on_stderr``), after the image's bytes.
``quiet`` silences all of it but results (errors are printed by ``main``). Progress is a
live view when stderr is a terminal and plain lines otherwise (see :mod:`.progress`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import IO

from ..cache.sizes import format_size
from ..events import Stats
from .progress import DEFAULT_INTERVAL, LiveView, PlainView, Tally


def wants_live(out: IO[str]) -> bool:
    """A live view only on a real terminal that can move the cursor."""
    try:
        tty = os.isatty(out.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


def interval_from_env(default: float = DEFAULT_INTERVAL) -> float:
    """``OCCYSTRAP_PROGRESS_INTERVAL`` seconds (plain mode), else ``default``."""
    try:
        value = float(os.environ.get("OCCYSTRAP_PROGRESS_INTERVAL", ""))
    except ValueError:
        return default
    return value if value > 0 else default


class CliReporter:
    def __init__(
        self,
        quiet: bool = False,
        *,
        out: IO[str] | None = None,
        live: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.quiet = quiet
        self.out = out if out is not None else sys.stderr
        #: stdout carries the image (``tar://-``): results must not be mixed into it
        self.results_on_stderr = False
        self._lock = threading.Lock()
        self.tally = Tally()
        self.view: LiveView | PlainView | None = None
        if not quiet:
            if live if live is not None else wants_live(self.out):
                self.view = LiveView(self.tally, self.out)
            else:
                every = interval if interval is not None else interval_from_env()
                self.view = PlainView(self.tally, self.out, every)
        self.log_stream = _LogStream(self)

    # -- text ----------------------------------------------------------------------------

    def notice(self, text: str) -> None:
        if not self.quiet and text:
            self.write_line(text)

    def write_line(self, text: str) -> None:
        """One line on stderr, above the live view when there is one."""
        view = self.view
        if isinstance(view, LiveView):
            view.print(text)
            return
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def result(self, text: str) -> None:
        """Output the user asked for (search hits): stdout, even when quiet."""
        if self.results_on_stderr:
            self.write_line(text)
            return
        view = self.view
        if isinstance(view, LiveView) and wants_live(sys.stdout):
            view.print_stdout(text, sys.stdout)  # the same terminal: keep the display intact
            return
        with self._lock:
            print(text, flush=True)

    def summary(self, text: str) -> None:
        self.notice(text)

    # -- progress ------------------------------------------------------------------------

    def image_started(self, reference: str, sizes: Sequence[int | None]) -> None:
        self.tally.image(sizes)
        if self.view is not None:
            self.view.begin()

    def layer_started(self, index: int, label: str, total: int | None) -> None:
        row = self.tally.start(index, label, total)
        if self.view is not None:
            self.view.started(index, row)

    def layer_progress(self, index: int, nbytes: int) -> None:
        row = self.tally.advance(index, nbytes)
        if self.view is not None and row is not None:
            self.view.advanced(index, row, nbytes)

    def layer_finished(self, index: int, outcome: str) -> None:
        row = self.tally.finish(index, outcome)
        if self.view is not None and row is not None:
            self.view.finished(index, row)

    def close(self) -> None:
        """Stop the progress display (idempotent); later lines go straight to stderr."""
        view, self.view = self.view, None
        if view is not None:
            view.close()


class _LogStream:
    """A stream for the logging handler: lines go above the live view while it runs."""

    def __init__(self, reporter: CliReporter) -> None:
        self._reporter = reporter

    def write(self, text: str) -> int:
        reporter = self._reporter
        if isinstance(reporter.view, LiveView):
            reporter.view.print(text.rstrip("\n"))
        else:
            reporter.out.write(text)
        return len(text)

    def flush(self) -> None:
        if not isinstance(self._reporter.view, LiveView):
            self._reporter.out.flush()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def summary_line(stats: Stats, elapsed: float) -> str:
    """``Summary: 1 image, 3 layers (1 already present, 2 from cache), read 3.1 MB,
    wrote 3.2 MB, 0 retries, 0.4s (read 7.8 MB/s, write 8.0 MB/s)``.

    Bytes read are layer bytes taken from the source (as stored, usually compressed);
    bytes written are what the destination stored or sent (uploads only, for registries).
    """
    rate_in = stats.bytes_read / elapsed if elapsed > 0 else 0.0
    rate_out = stats.bytes_written / elapsed if elapsed > 0 else 0.0
    extra = f", {stats.layers_mounted} mounted" if stats.layers_mounted else ""
    extra += f", {stats.cache_hits} from cache" if stats.cache_hits else ""
    retries = "1 retry" if stats.retries == 1 else f"{stats.retries} retries"
    return (
        f"Summary: {_plural(stats.images, 'image')}, {_plural(stats.layers, 'layer')} "
        f"({stats.layers_skipped} already present{extra}), "
        f"read {format_size(stats.bytes_read)}, wrote {format_size(stats.bytes_written)}, "
        f"{retries}, {elapsed:.1f}s (read {format_size(rate_in)}/s, write {format_size(rate_out)}/s)"
    )
