"""``ocidir://`` gaps closed: temporaries of SIGKILLed writers are swept by the next run (but
never a live writer's), and a failed run into a new directory leaves no layout behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lab.ocilayout import LayoutInfo
from lab.tools import OccystrapRunner, skopeo
from lab.writers import STALLING_LAYER, start_writer

#: an ocidir:// writer of ``argv[1]``: "kill" stores part of a layer and is SIGKILLed there;
#: "wait" says "ready" there and waits for a line on stdin before aborting; "commit-kill" is
#: SIGKILLed while writing a root temporary under the layout lock (as commit does)
_WRITER = (
    """
import os, signal, sys, types
from occystrap.transports.base import LayerWrite, RunContext
from occystrap.transports.ocilayout.layout import exclusive_lock
from occystrap.transports.ocilayout.sink import OciLayoutSink

root, mode = sys.argv[1], sys.argv[2]
sink = OciLayoutSink(root, "w", RunContext())
sink.begin(types.SimpleNamespace(name="lab/writer", tag="1"))
if mode == "commit-kill":
    with exclusive_lock(root), open(os.path.join(root, ".tmp-0123456789abcdef"), "xb") as f:
        f.write(b'{"half')
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""
    + STALLING_LAYER
)

HOURS_AGO = 2 * 3600


def writer(root: Path, mode: str) -> subprocess.Popen[bytes]:
    return start_writer(_WRITER, root, mode)


def temporaries(root: Path) -> list[str]:
    """Every ``.tmp-*`` under ``root`` (the root and ``blobs/*/``), relative."""
    found = [p for p in root.glob(".tmp-*")] + [p for p in root.glob("blobs/*/.tmp-*")]
    return sorted(p.relative_to(root).as_posix() for p in found)


def age(root: Path, names: list[str], seconds: float) -> None:
    when = time.time() - seconds
    for name in names:
        os.utime(root / name, (when, when))


def store_to(root: Path, layout: LayoutInfo, run_occystrap: OccystrapRunner) -> None:
    done = run_occystrap("process", f"ocidir://{layout.path}", f"ocidir://{root}:v1")
    assert done.returncode == 0, done.stderr.decode()
    refs = json.loads((root / "index.json").read_text())["manifests"]
    assert [m["digest"] for m in refs] == [layout.manifest_digest]


def killed(root: Path, mode: str) -> None:
    p = writer(root, mode)
    _, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, err.decode()


def test_rerun_sweeps_what_killed_writers_left(
    busybox_layout: LayoutInfo, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    root = tmp_path / "layout"
    for mode in ("kill", "kill", "commit-kill"):
        killed(root, mode)
    left = temporaries(root)
    blob_temps = [n for n in left if n.startswith("blobs/")]
    assert len(blob_temps) == 2 and ".tmp-0123456789abcdef" in left and len(left) == 3
    age(root, blob_temps, HOURS_AGO)
    store_to(root, busybox_layout, run_occystrap)
    assert temporaries(root) == []
    skopeo("copy", f"oci:{root}:v1", f"oci:{tmp_path / 'judge'}:x")


def test_young_temporaries_are_kept_until_stale(
    busybox_layout: LayoutInfo, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    """A fresh unlocked temporary may be a writer that has not locked it yet: kept."""
    root = tmp_path / "layout"
    killed(root, "kill")
    (young,) = temporaries(root)
    store_to(root, busybox_layout, run_occystrap)
    assert temporaries(root) == [young]
    age(root, [young], HOURS_AGO)
    store_to(root, busybox_layout, run_occystrap)
    assert temporaries(root) == []


def test_live_writers_temporary_is_kept(
    busybox_layout: LayoutInfo, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    root = tmp_path / "layout"
    live = writer(root, "wait")
    try:
        assert live.stdout is not None and live.stdout.readline() == b"ready\n"
        (mine,) = temporaries(root)
        age(root, [mine], HOURS_AGO)  # old, but locked by its live writer
        size = (root / mine).stat().st_size
        store_to(root, busybox_layout, run_occystrap)
        store_to(root, busybox_layout, run_occystrap)
        assert temporaries(root) == [mine]
        assert (root / mine).stat().st_size == size
    finally:
        _, err = live.communicate(b"go\n", timeout=60)
    assert live.returncode == 0, err.decode()
    assert temporaries(root) == []
    assert (root / "index.json").exists()  # the live writer's abort left the committed layout


def corrupt_copy(layout: LayoutInfo, dst: Path) -> Path:
    """``layout`` copied with its layer blob's last byte changed (same size, wrong digest)."""
    shutil.copytree(layout.path, dst)
    blob = dst / "blobs" / "sha256" / layout.layer_digests[0].split(":")[1]
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    return dst


def test_failed_run_into_a_new_directory_leaves_nothing(
    busybox_layout: LayoutInfo,
    edge_layout: LayoutInfo,
    tmp_path: Path,
    run_occystrap: OccystrapRunner,
) -> None:
    bad = corrupt_copy(busybox_layout, tmp_path / "bad")
    new = tmp_path / "new"
    done = run_occystrap("process", f"ocidir://{bad}", f"ocidir://{new}:v1")
    assert done.returncode != 0 and "Traceback" not in done.stderr.decode()
    assert not new.exists(), sorted(str(p.relative_to(new)) for p in new.rglob("*"))
    existing = tmp_path / "existing"
    store_to(existing, edge_layout, run_occystrap)
    before = sorted(str(p.relative_to(existing)) for p in existing.rglob("*"))
    done = run_occystrap("process", f"ocidir://{bad}", f"ocidir://{existing}:v2")
    assert done.returncode != 0
    after = sorted(str(p.relative_to(existing)) for p in existing.rglob("*"))
    assert after == before  # an existing layout keeps all it had, and gets no temporaries
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_occystrap("process", f"ocidir://{bad}", f"ocidir://{empty}:v1")
    assert done.returncode != 0 and empty.is_dir()  # not ours to remove
