"""Progress of layer transfers on stderr: a live view on a terminal, plain lines otherwise.

:class:`Tally` keeps the numbers (thread-safe; layers report from worker threads). Two views
show them:

* :class:`LiveView` (stderr is a terminal): a ``rich`` display of every layer in flight
  (bytes done of total, rate, time left) and the overall total; each finished layer leaves
  one line above it. The display is transient: it is gone when the run ends.
* :class:`PlainView` (CI logs, pipes): one ``progress:`` line every ``interval`` seconds
  (10 by default, ``OCCYSTRAP_PROGRESS_INTERVAL``) and, from then on, a line per finished
  layer. A run shorter than the interval prints none of them, only the summary.

Byte counts are of the stored (usually compressed) layer bytes read from the source; a
layer skipped because the destination had it, or taken from the layer cache, counts as done
without being read, and is not part of the rates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from ..cache.sizes import format_size

#: Plain-mode interval between progress lines, in seconds.
DEFAULT_INTERVAL = 10.0


@dataclass
class Row:
    label: str
    total: int | None
    started: float
    done: int = 0
    finished: float | None = None
    outcome: str = ""

    @property
    def completed(self) -> int:
        if self.finished is not None:
            return self.total if self.total is not None else self.done
        return min(self.done, self.total) if self.total is not None else self.done


@dataclass
class Tally:
    """Layer rows of the current image and totals over the whole run."""

    rows: dict[int, Row] = field(default_factory=dict)
    layers: int = 0  # layers announced (image_started), over all images
    current: int = 0  # layers of the current image (0: not announced)
    finished: int = 0
    total: int = 0  # stored bytes of the announced layers whose size is known
    transferred: int = 0  # bytes actually read
    started: float | None = None
    _closed_rows: int = 0  # completed bytes of rows of earlier images
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def image(self, sizes: Sequence[int | None]) -> None:
        with self.lock:
            self._closed_rows += sum(r.completed for r in self.rows.values())
            self.rows = {}
            self.current = len(sizes)
            self.layers += len(sizes)
            self.total += sum(s for s in sizes if s is not None)
            self.started = self.started or time.monotonic()

    def start(self, index: int, label: str, total: int | None) -> Row:
        with self.lock:
            now = time.monotonic()
            self.started = self.started or now
            old = self.rows.get(index)
            if old is not None:  # an image without image_started: a new image's layer 0...
                self._closed_rows += old.completed
            row = self.rows[index] = Row(label, total, now)
            return row

    def advance(self, index: int, nbytes: int) -> Row | None:
        with self.lock:
            self.transferred += nbytes
            row = self.rows.get(index)
            if row is not None:
                row.done += nbytes
            return row

    def finish(self, index: int, outcome: str) -> Row | None:
        with self.lock:
            row = self.rows.get(index)
            if row is not None and row.finished is None:
                row.finished = time.monotonic()
                row.outcome = outcome
                self.finished += 1
            return row

    def completed(self) -> int:
        with self.lock:
            return self._closed_rows + sum(r.completed for r in self.rows.values())

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0

    def rate(self) -> float:
        elapsed = self.elapsed()
        return self.transferred / elapsed if elapsed > 0 else 0.0


def short(label: str) -> str:
    """``sha256:0123456789ab`` from a long digest label."""
    alg, sep, rest = label.partition(":")
    return f"{alg}:{rest[:12]}" if sep and len(rest) > 12 else label


def layer_line(index: int, count: int, row: Row) -> str:
    """``layer 2/5 sha256:0123456789ab rewritten: 3.1 MB in 0.4s (7.9 MB/s)``"""
    took = (row.finished or time.monotonic()) - row.started
    where = f"{index + 1}/{count}" if count else f"{index + 1}"
    text = f"layer {where} {short(row.label)} {row.outcome}"
    if row.done:
        rate = row.done / took if took > 0 else 0.0
        text += f": {format_size(row.done)} in {took:.1f}s ({format_size(rate)}/s)"
    return text


class PlainView:
    """Plain lines on ``out``; see the module docstring."""

    def __init__(self, tally: Tally, out: IO[str], interval: float = DEFAULT_INTERVAL) -> None:
        self.tally = tally
        self.out = out
        self.interval = interval
        self.chatty = False  # set by the first periodic line
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def print(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def begin(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.chatty = True
            self.print(self.status())

    def status(self) -> str:
        t = self.tally
        done = t.completed()
        of = f" of {format_size(t.total)} ({100 * done // t.total}%)" if t.total else ""
        return (
            f"progress: {t.finished}/{t.layers} layers, {format_size(done)}{of}, "
            f"{format_size(t.rate())}/s, {t.elapsed():.0f}s"
        )

    def started(self, index: int, row: Row) -> None:
        self.begin()

    def advanced(self, index: int, row: Row, nbytes: int) -> None:
        pass

    def finished(self, index: int, row: Row) -> None:
        if self.chatty:
            self.print(layer_line(index, self.tally.current, row))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class LiveView:
    """A ``rich`` live display on the terminal ``out``; see the module docstring."""

    def __init__(self, tally: Tally, out: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.tally = tally
        self.console = Console(file=out, force_terminal=True, highlight=False)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            redirect_stdout=False,  # stdout may carry the image (tar://-) or --json
            redirect_stderr=False,
            refresh_per_second=8,
        )
        self._tasks: dict[int, Any] = {}
        self._overall: Any = None
        self._running = False
        self._lock = threading.Lock()

    def print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def print_stdout(self, text: str, stdout: IO[str]) -> None:
        """A line for stdout when stdout is the same terminal: the display steps aside."""
        with self._lock:
            running = self._running
            if running:
                self.progress.stop()  # transient: the display is cleared
            stdout.write(text + "\n")
            stdout.flush()
            if running:
                self.progress.start()

    def begin(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
            self.progress.start()
            self._overall = self.progress.add_task("total", total=None)
        self._update_overall()

    def _update_overall(self) -> None:
        t = self.tally
        self.progress.update(
            self._overall,
            description=f"total  {t.finished}/{t.layers} layers",
            total=t.total or None,
            completed=t.completed(),
        )

    def started(self, index: int, row: Row) -> None:
        self.begin()
        old = self._tasks.pop(index, None)
        if old is not None:
            self.progress.remove_task(old)
        count = self.tally.current
        self._tasks[index] = self.progress.add_task(
            f"layer {index + 1}/{count} {short(row.label)}" if count else short(row.label),
            total=row.total,
        )
        self.progress.refresh()  # every layer is shown at least once, however quick

    def advanced(self, index: int, row: Row, nbytes: int) -> None:
        task = self._tasks.get(index)
        if task is not None:
            self.progress.update(task, completed=row.completed)
        self._update_overall()

    def finished(self, index: int, row: Row) -> None:
        task = self._tasks.pop(index, None)
        if task is not None:
            self.progress.remove_task(task)
        self.print(layer_line(index, self.tally.current, row))
        self._update_overall()

    def close(self) -> None:
        with self._lock:
            if self._running:
                self._running = False
                self.progress.stop()
