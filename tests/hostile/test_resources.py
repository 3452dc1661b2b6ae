"""Resource bounds: temporary files stay under ``--temp-dir`` and go away on success, on
failure and on Ctrl-C; peak memory stays under 150 MB on a 1.5 GB image.

Temporary files are watched while the job runs (a thread lists the directories every few
milliseconds): the run must use ``--temp-dir`` (or ``$TMPDIR`` when no ``--temp-dir`` is
given) and nothing else, and leave it empty. Ctrl-C is SIGINT sent to the child alone,
mid-run: exit status 130, one ``occystrap: error: interrupted`` line, an empty temp dir,
no complete-looking output and no partial output. The image is fed on standard input at
a controlled pace for the interrupt tests, so "mid-run" is a known byte offset.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.dockersave import docker_save_legacy
from lab.images import big_layer_file, build_oci_layout
from lab.ocilayout import LayoutInfo
from lab.tempfiles import open_files_under

from .runner import OUTPUT_URIS, debris, is_complete

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _sigint_reaches_children() -> Iterator[None]:
    """Children inherit an ignored SIGINT, and Python then leaves it ignored: a suite started
    in the background by a shell without job control (``(pytest &)``) would see every
    interrupt test fail, the child deaf to the signal. With a handler here, a child starts
    with the default disposition, as under a terminal."""
    before = signal.getsignal(signal.SIGINT)
    if before == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


MiB = 1 << 20
LAYERS = 3
LAYER_SIZE = 48 * MiB
FILTER = ("-f", "exclude:pattern=no/such/file")


@dataclass
class Medium:
    layout: LayoutInfo
    archive: Path
    broken: Path  # the same archive with its last layer's bytes damaged (diff_id mismatch)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Medium:
    """An image of three 48 MiB incompressible layers: an OCI layout and docker-save tars."""
    root = tmp_path_factory.mktemp("medium")
    tars = [big_layer_file(root / f"l{i}.tar", LAYER_SIZE, seed=i).path for i in range(LAYERS)]
    layout = build_oci_layout(root / "layout", tars, compression="none")
    for t in tars:
        t.unlink()
    archive = docker_save_legacy(layout, root / "image.tar")
    data = bytearray(archive.read_bytes())
    data[-(LAYER_SIZE // 2)] ^= 0xFF  # inside the last layer.tar member, before the tail
    broken = root / "broken.tar"
    broken.write_bytes(bytes(data))
    return Medium(layout, archive, broken)


@dataclass
class Watched:
    returncode: int
    stderr: str
    seen: dict[str, set[str]] = field(default_factory=dict)  # dir -> names ever seen


class _Watcher:
    """Lists ``dirs`` every 5 ms until stopped, remembering every name seen, and the files
    under them that process ``pid`` (once set) holds open: unnamed temporary files have no
    name to list (``/proc/PID/fd`` shows them as ``DIR/#INODE (deleted)``)."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs
        self.pid: int | None = None
        self.seen: dict[str, set[str]] = {k: set() for k in dirs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, path in self.dirs.items():
                try:
                    self.seen[key].update(os.listdir(path))
                except FileNotFoundError:
                    pass
            if self.pid is not None:
                for key, path in self.dirs.items():
                    self.seen[key].update(open_files_under(path, [self.pid]))
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    temp, system, out = tmp_path / "temp", tmp_path / "system-tmp", tmp_path / "out"
    for d in (temp, system, out):
        d.mkdir()
    return temp, system, out


def _occystrap(*args: str) -> list[str]:
    return [sys.executable, "-m", "occystrap", "-q", *args]


def _run_watched(
    argv: list[str], tmp_path: Path, feed: Path | None = None, *, interrupt_at: int | None = None
) -> Watched:
    """Run ``argv`` with TMPDIR=system-tmp, watching temp/ and system-tmp/. With ``feed``
    the file goes to stdin in 1 MiB pieces; with ``interrupt_at`` SIGINT is sent once that
    many bytes were taken by the child (and the rest is never sent)."""
    temp, system, _ = tmp_path / "temp", tmp_path / "system-tmp", tmp_path / "out"
    env = {**os.environ, "TMPDIR": str(system)}
    env.pop("OCCYSTRAP_TEMP_DIR", None)
    env.pop("OCCYSTRAP_CACHE_DIR", None)
    watcher = _Watcher({"temp": temp, "system": system})
    child = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    watcher.pid = child.pid
    try:
        if feed is not None:
            assert child.stdin is not None
            sent = 0
            with open(feed, "rb") as f:
                while chunk := f.read(MiB):
                    if interrupt_at is not None and sent >= interrupt_at:
                        time.sleep(0.3)  # let the child work on what it has
                        child.send_signal(signal.SIGINT)
                        break
                    try:
                        child.stdin.write(chunk)
                        child.stdin.flush()
                    except BrokenPipeError:
                        break
                    sent += len(chunk)
            try:
                child.stdin.close()
            except BrokenPipeError:
                pass
            child.stdin = None  # closed: communicate() must not flush it
        _, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        watcher.stop()
    return Watched(child.returncode, err.decode(errors="replace"), watcher.seen)


def _assert_clean(w: Watched, tmp_path: Path, *, used: str | None) -> None:
    """No traceback; temp dirs empty now; ``used`` ("temp"/"system") was used, the other not."""
    assert "Traceback" not in w.stderr, w.stderr
    for key, path in (("temp", tmp_path / "temp"), ("system", tmp_path / "system-tmp")):
        assert os.listdir(path) == [], f"{key} dir not cleaned: {os.listdir(path)}"
        if used is not None and key != used:
            assert not w.seen[key], f"temporary files went to {key}: {sorted(w.seen[key])}"
    if used is not None:
        assert w.seen[used], f"the job made no temporary file in {used} (test image too small?)"


# -- where temporary files go, and that they go away -----------------------------------------


JOBS: dict[str, Callable[[Medium, Path], tuple[list[str], Path | None]]] = {
    # a docker-save on stdin: layers before manifest.json are held in temporary files
    "stdin-to-ocidir": lambda m, out: (["tar://-", f"ocidir://{out}/l:v"], m.archive),
    # a filter with a compressed output: each rewritten layer is packed in a temporary file
    "ocidir-filtered": lambda m, out: (
        [f"ocidir://{m.layout.path}:latest", f"ocidir://{out}/l:v", *FILTER],
        None,
    ),
}


@pytest.mark.parametrize("job", sorted(JOBS))
@pytest.mark.parametrize("where", ["temp-dir", "default"])
def test_temp_files_go_to_temp_dir_and_are_removed(
    medium: Medium, tmp_path: Path, job: str, where: str
) -> None:
    temp, _, out = _dirs(tmp_path)
    args, feed = JOBS[job](medium, out)
    flags = ["--temp-dir", str(temp)] if where == "temp-dir" else []
    w = _run_watched(_occystrap(*flags, "process", *args), tmp_path, feed)
    assert w.returncode == 0, w.stderr
    _assert_clean(w, tmp_path, used="temp" if where == "temp-dir" else "system")


@pytest.mark.parametrize("output", ["tar", "ocidir+filter", "dir-expand", "bundle"])
def test_temp_files_removed_on_failure(medium: Medium, tmp_path: Path, output: str) -> None:
    """The last layer of the archive is damaged: the job fails after spooling the others."""
    temp, _, out = _dirs(tmp_path)
    dest = OUTPUT_URIS[output].format(out=out)
    extra = FILTER if output == "ocidir+filter" else ()
    argv = _occystrap("--temp-dir", str(temp), "process", "tar://-", dest, *extra)
    w = _run_watched(argv, tmp_path, medium.broken)
    assert w.returncode == 1, w.stderr
    lines = w.stderr.splitlines()
    assert len(lines) == 1 and "digest mismatch" in lines[0], lines
    _assert_clean(w, tmp_path, used="temp")
    assert not is_complete(output, out) and not debris(output, out), debris(output, out)


# -- Ctrl-C ------------------------------------------------------------------------------------

ARCHIVE_MIB = LAYERS * LAYER_SIZE // MiB


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
@pytest.mark.parametrize(
    "output", ["tar", "ocidir", "ocidir+filter", "dir", "dir-expand", "bundle"]
)
def test_ctrl_c_mid_run(medium: Medium, tmp_path: Path, output: str, fraction: float) -> None:
    temp, _, out = _dirs(tmp_path)
    dest = OUTPUT_URIS[output].format(out=out)
    extra = FILTER if output == "ocidir+filter" else ()
    argv = _occystrap("--temp-dir", str(temp), "process", "tar://-", dest, *extra)
    w = _run_watched(argv, tmp_path, medium.archive, interrupt_at=int(fraction * ARCHIVE_MIB) * MiB)
    assert w.returncode == 130, w.stderr
    assert _lines(w.stderr) == ["occystrap: error: interrupted"], w.stderr
    _assert_clean(w, tmp_path, used=None)
    assert not is_complete(output, out), f"{output}: complete output after Ctrl-C"
    assert not debris(output, out), f"{output}: partial output left: {debris(output, out)}"
    assert sorted(os.listdir(tmp_path)) == ["out", "system-tmp", "temp"]


def test_ctrl_c_while_reading_a_layout(medium: Medium, tmp_path: Path) -> None:
    """SIGINT once the job is busy with an OCI layout source (time based, not fed)."""
    temp, _, out = _dirs(tmp_path)
    argv = _occystrap(
        "--temp-dir", str(temp), "process", f"ocidir://{medium.layout.path}:latest",
        f"ocidir://{out}/l:v", *FILTER,
    )  # fmt: skip
    watcher = _Watcher({"temp": temp})
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher.pid = child.pid
    try:
        deadline = time.monotonic() + 60
        while not watcher.seen["temp"] and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert child.poll() is None, "the job ended before it could be interrupted"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
        watcher.stop()
    assert child.returncode == 130, err
    assert _lines(err.decode()) == ["occystrap: error: interrupted"], err
    assert os.listdir(temp) == []
    assert not is_complete("ocidir", out) and not debris("ocidir", out)


def _lines(stderr: str) -> list[str]:
    """stderr's lines, without the empty line click prints on KeyboardInterrupt (see below)."""
    return [line for line in stderr.splitlines() if line]


def test_ctrl_c_prints_exactly_one_line(medium: Medium, tmp_path: Path) -> None:
    temp, _, out = _dirs(tmp_path)
    argv = _occystrap("--temp-dir", str(temp), "process", "tar://-", f"tar://{out}/i.tar")
    w = _run_watched(argv, tmp_path, medium.archive, interrupt_at=ARCHIVE_MIB // 2 * MiB)
    assert w.returncode == 130
    assert w.stderr.splitlines() == ["occystrap: error: interrupted"], w.stderr
