"""Progress and the summary line, through the real CLI (``python -m occystrap``).

Progress is judged as a user sees it: stderr on a pseudo-terminal (``os.openpty``) must show
the live view (cursor control, per-layer rows, the total), stderr on a pipe (a CI log) must
show plain ``progress:`` lines and no escape sequences. Whatever stderr is, the image on
stdout (``tar://-``) must be byte-identical to a ``--quiet`` run. Summary numbers are
checked against sizes known from the fixture image and the files written.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from lab.images import big_layer_file
from lab.ocilayout import LayoutInfo, build_oci_layout
from lab.tarspec import TarSpec, directory, file
from occystrap.api import process
from occystrap.cli.report import CliReporter, summary_line
from occystrap.copy import CopyResult
from occystrap.events import Stats
from occystrap.transports.base import RunContext

ESC = b"\x1b["
SUMMARY = re.compile(
    r"Summary: (\d+) images?, (\d+) layers? \((\d+) already present(?:, (\d+) from cache)?\), "
    r"read (.+?), wrote (.+?), (\d+) retr(?:y|ies), [\d.]+s \(read .+?/s, write .+?/s\)$"
)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> LayoutInfo:
    """Three layers: small files, 12 MB of incompressible data, one more small file."""
    root = tmp_path_factory.mktemp("progress")
    big = big_layer_file(root / "big.tar", 12 << 20, seed=7, files=3)
    layers: list[list[TarSpec] | Path] = [
        [directory("etc"), file("etc/hostname", "lab\n")],
        big.path,
        [directory("srv"), file("srv/data", b"x" * 5000)],
    ]
    return build_oci_layout(root / "layout", layers)


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "occystrap", *(os.fspath(a) for a in args)]


def run_with_pty(args: list[str], env: Mapping[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """Run ``args`` with stderr on a pseudo-terminal (120x40); return (rc, stdout, terminal)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    seen: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                return
            if not data:
                return
            seen.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env={**os.environ, "TERM": "xterm-256color", **(env or {})},
        )
        os.close(slave)
        slave = -1
        out, _ = proc.communicate(timeout=300)
        reader.join(timeout=10)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return proc.returncode, out, b"".join(seen)


def run_piped(
    args: list[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def test_live_view_on_a_terminal_and_stdout_stays_clean(image: LayoutInfo) -> None:
    src = f"ocidir://{image.path}:latest"
    args = cli("-j", "1", "process", src, "tar://-", "-f", "normalize-timestamps")
    rc, out, term = run_with_pty(args)
    assert rc == 0, term.decode(errors="replace")
    quiet = run_piped(cli("-q", "-j", "1", "process", src, "tar://-", "-f", "normalize-timestamps"))
    assert quiet.returncode == 0 and quiet.stderr == b""
    assert out == quiet.stdout and len(out) > 12 << 20  # the image, and nothing else
    text = term.decode(errors="replace")
    assert "\x1b[?25l" in text and "\x1b[2K" in text  # a live display: cursor hidden, lines redrawn
    assert re.search(r"layer 2/3 sha256:[0-9a-f]{12} .*\d+\.\d/12\.\d MB", text), text[-3000:]
    assert "total" in text and "/3 layers" in text
    for i, digest in enumerate(image.layer_digests, 1):  # one line per finished layer stays
        assert re.search(rf"layer {i}/3 {digest[:19]} rewritten", text)
    assert SUMMARY.search(text.rstrip().splitlines()[-1].strip()), text[-500:]


def test_quiet_on_a_terminal_prints_nothing(image: LayoutInfo) -> None:
    rc, out, term = run_with_pty(
        cli("--quiet", "process", f"ocidir://{image.path}:latest", "tar://-")
    )
    assert rc == 0 and term == b"" and len(out) > 12 << 20


def test_plain_lines_without_a_terminal(image: LayoutInfo, tmp_path: Path) -> None:
    src = f"ocidir://{image.path}:latest"
    env = {"OCCYSTRAP_PROGRESS_INTERVAL": "0.02"}
    done = run_piped(cli("-j", "1", "process", src, "tar://-", "-f", "normalize-timestamps"), env)
    assert done.returncode == 0, done.stderr.decode()
    assert ESC not in done.stderr  # a CI log gets no cursor movement or colours
    lines = done.stderr.decode().splitlines()
    progress = [line for line in lines if line.startswith("progress: ")]
    assert progress, lines
    for line in progress:
        m = re.fullmatch(
            r"progress: (\d)/3 layers, (.+?)( of 12\.\d MB \(\d+%\))?, .+?/s, \d+s", line
        )
        assert m, line
    assert "layer 3/3" in done.stderr.decode()  # finished layers are listed once lines began
    assert SUMMARY.fullmatch(lines[-1]), lines[-1]
    quiet = run_piped(cli("-q", "-j", "1", "process", src, "tar://-", "-f", "normalize-timestamps"))
    assert done.stdout == quiet.stdout


def test_short_runs_without_a_terminal_print_only_the_summary(image: LayoutInfo) -> None:
    """The default interval is 10 s: a quick run leaves no progress lines in a CI log."""
    done = run_piped(cli("process", f"ocidir://{image.path}:latest", "tar://-"))
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 0 and len(lines) == 2, lines  # what was written, and the summary
    assert lines[0].startswith("wrote tar") and SUMMARY.fullmatch(lines[1])


def test_summary_numbers_match_the_bytes_moved(image: LayoutInfo, tmp_path: Path) -> None:
    src = f"ocidir://{image.path}:latest"
    out = tmp_path / "copy"
    first = run_piped(cli("process", src, f"ocidir://{out}:v1"))
    assert first.returncode == 0, first.stderr.decode()
    m = SUMMARY.fullmatch(first.stderr.decode().splitlines()[-1])
    assert m, first.stderr
    layers = sum(image.layer_sizes)
    stored = sum(
        (out / "blobs" / "sha256" / d.split(":")[1]).stat().st_size for d in image.layer_digests
    )
    assert m.groups() == ("1", "3", "0", None, fmt(layers), fmt(stored), "0")
    again = run_piped(cli("process", src, f"ocidir://{out}:v1"))
    m = SUMMARY.fullmatch(again.stderr.decode().splitlines()[-1])
    assert m and m.group(2, 3, 5) == ("3", "3", "0 B")  # everything already present, nothing read

    # exact counts through the library, the numbers behind the line: layer bytes both ways
    ctx = RunContext(stats=Stats())
    result = process(src, f"ocidir://{tmp_path / 'exact'}:v1", ["normalize-timestamps"], ctx)
    assert isinstance(result, CopyResult)
    blobs_dir = tmp_path / "exact" / "blobs" / "sha256"
    written = sum((blobs_dir / d.digest.encoded).stat().st_size for d in result.manifest.layers)
    assert (ctx.stats.bytes_read, ctx.stats.bytes_written) == (layers, written)
    assert written != layers  # recompressed: a different count, and still exact
    assert (ctx.stats.images, ctx.stats.layers, ctx.stats.layers_skipped) == (1, 3, 0)


def fmt(n: int) -> str:
    from occystrap.cache import format_size

    return format_size(n)


def test_summary_line_format() -> None:
    stats = Stats(images=2, layers=5, layers_skipped=1, cache_hits=3, bytes_read=2_500_000,
                  bytes_written=10_000_000, retries=1)  # fmt: skip
    line = summary_line(stats, 2.0)
    assert line == (
        "Summary: 2 images, 5 layers (1 already present, 3 from cache), read 2.5 MB, "
        "wrote 10.0 MB, 1 retry, 2.0s (read 1.2 MB/s, write 5.0 MB/s)"
    )
    assert SUMMARY.fullmatch(line)


def test_reporter_counts_progress_from_worker_threads() -> None:
    """Layers report from several threads at once; the tally must add up exactly."""
    import io

    out = io.StringIO()
    reporter = CliReporter(out=out, live=False, interval=60)
    reporter.image_started("img", [4000, 4000, 4000, 4000])
    for i in range(4):
        reporter.layer_started(i, f"sha256:{i:064x}", 4000)

    def work(index: int) -> None:
        for _ in range(1000):
            reporter.layer_progress(index, 4)
        reporter.layer_finished(index, "copied")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reporter.close()
    assert reporter.tally.transferred == 16000 and reporter.tally.completed() == 16000
    assert reporter.tally.finished == 4
