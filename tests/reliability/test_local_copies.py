"""Registry → ocidir://: each downloaded blob is written to disk once.

The registry source keeps every blob it downloads in its resume cache, verified. An OCI
layout stores blobs as they are, so it takes that copy by hard link instead of writing the
same bytes a second time (``AdoptingSink``). Measured from outside: the bytes the process
hands to ``write()`` (``wchar`` in ``/proc/self/io``, reported at exit) are about the
image's size, not twice it. With the cache on another file system no link can be made: the
layout then writes its own copy, the count doubles (so the measure can fail), and the
output is just as right. Either way skopeo accepts the layout, every blob hashes to its
name, and the cache is empty after the run.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

from lab.registry import Registry
from lab.tools import skopeo

from .harness import KillImage, ok, run

#: Runs the CLI and reports the bytes written by the whole process when it exits.
_COUNTING = """
import atexit, runpy, sys
def report():
    fields = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    sys.stderr.write("WCHAR %s\\n" % fields["wchar"])
atexit.register(report)
sys.argv = ["occystrap", *sys.argv[1:]]
runpy.run_module("occystrap", run_name="__main__", alter_sys=True)
"""


def _pull(kill_image: KillImage, registry: Registry, env: dict[str, str], out: Path) -> int:
    """registry → ocidir; returns the bytes the process wrote."""
    cmd = [
        sys.executable,
        "-c",
        _COUNTING,
        "--insecure",
        "process",
        f"registry://{registry.host}/{kill_image.repo}:v1",
        f"ocidir://{out}:v1",
    ]
    done = ok(run(cmd, env))
    found = re.search(rb"^WCHAR (\d+)$", done.stderr, re.M)
    assert found, done.stderr.decode(errors="replace")
    return int(found[1])


def _check_layout(layout: Path, kill_image: KillImage, tmp_path: Path) -> None:
    for digest, size in kill_image.blobs.items():
        blob = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
        data = blob.read_bytes()
        assert len(data) == size and "sha256:" + hashlib.sha256(data).hexdigest() == digest
    skopeo("copy", f"oci:{layout}:v1", f"oci:{tmp_path / 'judge'}:x")


def _cache_files(env: dict[str, str]) -> list[Path]:
    root = Path(env["XDG_CACHE_HOME"]) / "occystrap" / "partial"
    return sorted(root.iterdir()) if root.is_dir() else []


def test_downloaded_blobs_are_written_once(
    kill_image: KillImage, registry_plain: Registry, env: dict[str, str], tmp_path: Path
) -> None:
    total = sum(kill_image.blobs.values())
    layout = tmp_path / "layout"
    written = _pull(kill_image, registry_plain, env, layout)
    assert 0.9 * total < written < 1.3 * total, (written, total)
    _check_layout(layout, kill_image, tmp_path)
    assert not _cache_files(env), "a successful run must clean the download cache"
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert blob.stat().st_nlink == 1  # the cache's name is gone, the layout's stays


def test_no_link_across_file_systems_so_the_layout_writes_its_own_copy(
    kill_image: KillImage, registry_plain: Registry, env: dict[str, str], tmp_path: Path
) -> None:
    shm = Path("/dev/shm")
    assert shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev
    cache = shm / f"occystrap-test-{os.getpid()}-{tmp_path.name}"
    total = sum(kill_image.blobs.values())
    layout = tmp_path / "layout"
    try:
        written = _pull(kill_image, registry_plain, {**env, "XDG_CACHE_HOME": str(cache)}, layout)
        assert written > 1.8 * total, (written, total)
        _check_layout(layout, kill_image, tmp_path)
        assert not _cache_files({"XDG_CACHE_HOME": str(cache)})
    finally:
        for path in sorted(cache.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        if cache.exists():
            cache.rmdir()
