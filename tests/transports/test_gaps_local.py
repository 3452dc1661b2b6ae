"""Local-transport gaps closed: decompression caps on docker-save archives, empty ``?tag=``,
and temporaries of killed ``dir://`` writers swept by the next run.

Bombs are small here: the CLI runs with ``occystrap.bounds.EXPANSION_FLOOR`` lowered to
1 MiB, so a 16 MiB run of zeros (gzip: about 16 KiB, so at most 4 MiB allowed by the 250:1
ratio) is one; with the real 1 GiB floor the same archives copy fine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from lab import images
from lab.ocilayout import LayoutInfo
from lab.tarspec import file
from lab.tools import OccystrapRunner, require, run
from lab.writers import STALLING_LAYER, start_writer

FLOOR = 1 << 20
ZEROS = 16 << 20

#: ``python -m occystrap`` with the expansion floor lowered to ``sys.argv[1]`` bytes
CAPPED = (
    "import sys, occystrap.bounds as b; b.EXPANSION_FLOOR = int(sys.argv.pop(1)); "
    "from occystrap.cli.main import main; main()"
)


def run_capped(
    *args: str | os.PathLike[str], stdin: bytes | Path | None = None, floor: int = FLOOR
) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-c", CAPPED, str(floor), *(os.fspath(a) for a in args)]
    if isinstance(stdin, Path):
        with open(stdin, "rb") as f:
            return subprocess.run(cmd, stdin=f, capture_output=True, timeout=300, check=False)
    return subprocess.run(
        cmd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=300,
        check=False,
    )


def one_line_failure(proc: subprocess.CompletedProcess[bytes], status: int, *needles: str) -> str:
    err = proc.stderr.decode(errors="replace").strip()
    assert proc.returncode == status, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- 1. decompression caps on docker-save archives ---------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gaps-local")


@pytest.fixture(scope="module")
def zeros_layout(work: Path) -> LayoutInfo:
    return images.build_oci_layout(
        work / "zeros", [[file("zeros", bytes(ZEROS))], [file("a.txt", "a\n")]], tag="z"
    )


@pytest.fixture(scope="module")
def bombs(work: Path, zeros_layout: LayoutInfo) -> dict[str, Path]:
    d = work / "bombs"
    d.mkdir()
    plain = images.docker_save_legacy(zeros_layout, d / "plain.tar", ["lab/zeros:1"])
    zst = d / "plain.tar.zst"
    run([require("zstd"), "-q", "-19", "-f", str(plain), "-o", str(zst)])
    return {
        "gzip-wrapped": images.gzip_archive(plain, d / "plain.tar.gz"),
        "zstd-wrapped": zst,
        "gzip-layers": images.docker_save_legacy(
            zeros_layout, d / "gzlayers.tar", ["lab/zeros:1"], gzip_layers=True
        ),
    }


def test_bomb_fixtures_are_bombs_only_for_the_lowered_floor(bombs: dict[str, Path]) -> None:
    for path in bombs.values():
        stored = path.stat().st_size if "wrapped" in path.name else 64 << 10
        assert ZEROS > max(FLOOR, 250 * stored), path


@pytest.mark.parametrize("name", ["gzip-wrapped", "zstd-wrapped"])
@pytest.mark.parametrize("how", ["path", "pipe", "redirect"])
def test_wrapped_archive_bomb_is_refused(
    name: str, how: str, bombs: dict[str, Path], tmp_path: Path
) -> None:
    src = bombs[name]
    out = tmp_path / "out"
    out.mkdir()
    if how == "path":
        proc = run_capped("process", f"tar://{src}", f"tar://{out}/o.tar")
    else:
        stdin: bytes | Path = src.read_bytes() if how == "pipe" else src
        proc = run_capped("process", "tar://-", f"tar://{out}/o.tar", stdin=stdin)
    one_line_failure(proc, 1, "exceeds the limit")
    assert list(out.iterdir()) == []
    # the real floor lets the same archive through
    ok = run_capped("process", f"tar://{src}", f"tar://{out}/o.tar", floor=1 << 30)
    assert ok.returncode == 0, ok.stderr.decode()


@pytest.mark.parametrize("dest", ["tar", "dir", "ocidir"])
def test_gzip_layer_bomb_inside_an_archive_is_refused(
    dest: str, bombs: dict[str, Path], tmp_path: Path
) -> None:
    """A gzip ``<id>/layer.tar`` has no recorded digest: its diff_id check decompresses it."""
    src = bombs["gzip-layers"]
    out = tmp_path / "out"
    out.mkdir()
    target = {"tar": f"tar://{out}/o.tar", "dir": f"dir://{out}/d", "ocidir": f"ocidir://{out}/l"}
    proc = run_capped("process", f"tar://{src}", target[dest])
    one_line_failure(proc, 1, "exceeds the limit")
    assert not (out / "o.tar").exists()
    assert not (out / "d" / "catalog.json").exists()
    assert not (out / "l" / "index.json").exists()


def test_gzip_member_bomb_in_a_stream_is_refused(bombs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o.tar"
    proc = run_capped("process", "tar://-", f"tar://{out}", stdin=bombs["gzip-layers"].read_bytes())
    one_line_failure(proc, 1, "exceeds the limit")
    assert not out.exists()


# -- 2. an empty ?tag= on tar:// output --------------------------------------------------------


@pytest.fixture(scope="module")
def small_archive(work: Path) -> Path:
    info = images.build_oci_layout(work / "small", [[file("s.txt", "s\n")]], tag="s")
    return images.docker_save_legacy(info, work / "small.tar", ["lab/small:1"])


@pytest.mark.parametrize("query", ["tag=", "tag=%20", "tag=a/b:1,", "tag=a/b:1&tag="])
def test_empty_tag_is_refused(
    query: str, small_archive: Path, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    out = tmp_path / "o.tar"
    proc = run_occystrap("process", f"tar://{small_archive}", f"tar://{out}?{query}")
    line = one_line_failure(proc, 2, "option 'tag' is empty", "expected NAME[:TAG]")
    assert "team/app:v1" in line
    assert not out.exists()


def test_tags_still_accepted(
    small_archive: Path, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    out = tmp_path / "o.tar"
    proc = run_occystrap(
        "process", f"tar://{small_archive}", f"tar://{out}?tag=a/b:1,c/d&tag=e/f:2"
    )
    assert proc.returncode == 0, proc.stderr.decode()
    with tarfile.open(out) as tar:
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None
        tags = json.loads(manifest.read())[0]["RepoTags"]
    assert tags == ["a/b:1", "c/d:latest", "e/f:2"]
    untagged = run_occystrap("process", f"tar://{small_archive}", f"tar://{tmp_path}/u.tar")
    assert untagged.returncode == 0, untagged.stderr.decode()


# -- 3. temporaries of killed dir:// writers ---------------------------------------------------

#: a dir:// writer: begins, stores part of a layer, then (argv[2]) "kill"s itself there,
#: or says "ready" and waits for a line on stdin before aborting; "commit-kill" is killed
#: while replacing catalog.json (under the store lock, as commit does)
_WRITER = (
    """
import os, signal, sys, types
from occystrap.blobio.spool import atomic_write
from occystrap.transports.base import LayerWrite, RunContext
from occystrap.transports.directory import catalog
from occystrap.transports.directory.sink import DirectorySink
from occystrap.transports.directory.options import DirSinkOptions

root, mode = sys.argv[1], sys.argv[2]
if mode == "commit-kill":
    with catalog.store_lock(root), atomic_write(os.path.join(root, "catalog.json")) as f:
        f.write(b'{"half')
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

sink = DirectorySink(root, DirSinkOptions(unique_names=True), RunContext())
sink.begin(types.SimpleNamespace(name="lab/writer", tag="1"))
"""
    + STALLING_LAYER
)


def writer(root: Path, mode: str) -> subprocess.Popen[bytes]:
    return start_writer(_WRITER, root, mode)


def temporaries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if ".tmp-" in p.name)


def store_to(root: Path, src: Path, run_occystrap: OccystrapRunner) -> None:
    proc = run_occystrap("process", f"tar://{src}", f"dir://{root}?unique_names=true")
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads((root / "catalog.json").read_text())["lab/small"]["1"]["layers"]


def test_rerun_sweeps_what_killed_writers_left(
    small_archive: Path, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    left: list[str] = []
    for mode in ("kill", "kill", "commit-kill"):
        p = writer(root, mode)
        p.communicate(timeout=60)
        assert p.returncode == -signal.SIGKILL
        if mode == "kill":  # the second writer swept the first one's work directory
            (work,) = (n for n in temporaries(root) if n.startswith(".tmp-"))
            assert work not in left
            assert any(f.name.startswith("layer-0-") for f in (root / work).iterdir())
            left = [work]
    assert len(temporaries(root)) == 2
    assert any(n.startswith(".catalog.json.tmp-") for n in temporaries(root))
    store_to(root, small_archive, run_occystrap)
    assert temporaries(root) == []


def test_live_writers_work_is_kept(
    small_archive: Path, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    live = writer(root, "wait")
    try:
        assert live.stdout is not None and live.stdout.readline() == b"ready\n"
        (mine,) = temporaries(root)
        partial = [f.name for f in (root / mine).iterdir()]
        store_to(root, small_archive, run_occystrap)
        store_to(root, small_archive, run_occystrap)
        assert temporaries(root) == [mine]
        assert [f.name for f in (root / mine).iterdir()] == partial
    finally:
        _, err = live.communicate(b"go\n", timeout=60)
    assert live.returncode == 0, err.decode()
    assert temporaries(root) == []


def test_lockless_work_directories_are_swept_only_when_old(
    small_archive: Path, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    """What an older occystrap left (no owner.lock): removed after a day, kept before."""
    root = tmp_path / "store"
    for name, age in ((".tmp-0ld0ld0ld0ld", 2 * 86400), (".tmp-fresh0fresh0", 60)):
        d = root / name
        (d / "rootfs" / "ro").mkdir(parents=True)
        (d / "layer-0-abcd.tar").write_bytes(b"x" * 100)
        (d / "rootfs" / "ro").chmod(0o555)
        when = time.time() - age
        os.utime(d, (when, when))
    store_to(root, small_archive, run_occystrap)
    assert temporaries(root) == [".tmp-fresh0fresh0"]
    (root / ".tmp-fresh0fresh0" / "rootfs" / "ro").chmod(0o755)
