"""Run one tool on one job once: clean, time, peak RSS (the lab's wrapper), check the output.

Commands run under coreutils ``timeout`` inside ``tests.lab.rss.measure``, a bare
``python -S`` wrapper that reports the peak RSS of the command and its children, and its wall
time from launch to exit. The wrapper's own start-up (about 30 ms) is left out: it belongs to
no tool, and the floors, measured in the harness's process, do not pay it either. The output
directory is emptied and ``sync`` called before each run, so one run's write-back does not
slow the next; cleaning is not timed. On a VM that reports free pages to its host, every run
(tools and floors alike) then waits :data:`SETTLE` seconds, so that no run writes into the
pages the run before it has just freed. A tool that fails becomes a ``Sample`` with a one-line
error, never an exception.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab.rss import measure

from occystrap.transports.base import RunContext
from occystrap.transports.registry.connect import locations_dir

from .env import page_reporting
from .jobs import Ctx, Job, Tool, check, command

#: Seconds every run waits after its output directory was emptied, on a VM whose balloon
#: reports free pages to the host (``env.page_reporting``). The kernel reports pages that
#: stayed free about 2 s; the host may take them back, and the next write into them faults
#: them in again: writing 353 MB into the page cache took 0.11-0.15 s within a few ms of
#: freeing the previous output, and 0.75-0.88 s 2 s or more after it (docs/performance.md,
#: eleventh session). A floor, measured in the harness's process, starts writing within
#: microseconds and so reused the pages just freed, while a tool starts writing after its
#: start-up (0.02-0.5 s) and often found them handed back. After the wait, every run writes
#: into memory the host was offered, as after any pause on this machine.
SETTLE = 3.0 if page_reporting() else 0.0

#: skopeo's blob-info cache (root; c/image 5.23 has no flag or variable to move it). With
#: it, skopeo skips uploads it remembers and mounts blobs it saw elsewhere; it is deleted
#: before every skopeo run so that every run does the whole job.
SKOPEO_CACHES = (
    Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb"),
    Path.home() / ".local/share/containers/cache/blob-info-cache-v1.boltdb",
)


@dataclass
class Sample:
    seconds: float | None
    rss: int | None  # bytes
    error: str | None = None
    pushed: int | None = None  # compressed bytes an image push wrote (registry outputs)
    cpu: float | None = None  # user + system CPU seconds of the tool and its children


#: where our pushes remember which repositories hold a blob (the default a run uses);
#: deleted before every run of ours for the same reason as skopeo's cache (a later round
#: would mount, not upload)
OURS_LOCATIONS = locations_dir(RunContext())


def clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.sync()
    time.sleep(SETTLE)


def clear_skopeo_cache() -> None:
    for cache in SKOPEO_CACHES:
        cache.unlink(missing_ok=True)


def one_line(stderr: str, rc: int) -> str:
    """The most telling line of a failed tool's stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if any(w in line.lower() for w in ("error", "failed", "exception", "fatal")):
            return line[:200]
    return (lines[-1][:200] if lines else "") or f"exit status {rc}"


def run_floor(job: Job, ctx: Ctx) -> Sample:
    clean(ctx.out)
    start = time.perf_counter()
    try:
        result = job.floor(ctx)
    except Exception as err:
        return Sample(None, None, f"floor: {type(err).__name__}: {err}"[:200])
    seconds = time.perf_counter() - start
    pushed = sum(result) if isinstance(result, list) else None
    return Sample(seconds, None, pushed=pushed)


def run_tool(job: Job, tool: Tool, ctx: Ctx, timeout: float) -> Sample | None:
    """One timed run; None when ``tool`` cannot do ``job``."""
    if tool == "floor":
        return run_floor(job, ctx)
    cmd = command(job, tool, ctx)
    if cmd is None:
        return None
    clean(ctx.out)
    if tool == "skopeo":
        clear_skopeo_cache()
    if tool == "ours":
        if OURS_LOCATIONS is not None:
            shutil.rmtree(OURS_LOCATIONS, ignore_errors=True)
    wrapped = ["timeout", "-k", "10", str(int(timeout)), *cmd]
    try:
        result = measure(wrapped, timeout=timeout + 60)
    except Exception as err:
        return Sample(None, None, f"harness: {type(err).__name__}: {err}"[:200])
    seconds = result.seconds
    if result.returncode == 124:
        return Sample(None, result.peak_rss, f"timed out after {timeout:.0f} s")
    if result.returncode != 0:
        return Sample(None, result.peak_rss, one_line(result.stderr, result.returncode))
    error, pushed = check(job, ctx)
    if error:
        return Sample(None, result.peak_rss, error)
    return Sample(seconds, result.peak_rss, pushed=pushed, cpu=result.cpu)
