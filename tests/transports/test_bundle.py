"""``oci://PATH`` / ``bundle://PATH``: OCI runtime bundles, judged by runc, umoci and the schema.

Every bundle is written by the CLI (``python -m occystrap process SOURCE oci://BUNDLE``) from
images built by the lab without occystrap's code. ``runc run`` must boot them as they are.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import images
from lab.hostile import ESCAPE_DIR, HOSTILE_KINDS, SENTINEL, hostile_oci_layout
from lab.ocilayout import LayoutInfo
from lab.schemas import validate
from lab.tarspec import TarSpec, directory, file, opaque, whiteout
from lab.tools import OccystrapRunner, require, umoci
from unit.test_unpack import snapshot

IS_ROOT = os.geteuid() == 0

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:App:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:2345:\n"
# What the container prints: its ids and directory, whether the whited-out file is still
# there, and what the opaque directory holds (only the upper layer's file).
SCRIPT = (
    'echo "hello from $(id -u):$(id -g) in $(pwd)"; '
    "if [ -e /etc/doomed ]; then echo doomed-present; fi; ls /opaque"
)
APP_OUTPUT = "hello from 1234:2345 in /work\nnew\n"


@dataclass(frozen=True)
class Fixture:
    layout: LayoutInfo  # tag "app" (User app, WorkingDir /work); also "root" and "ghost"
    archive: Path  # docker-archive of tag "app", written by skopeo


def _layers() -> list[list[TarSpec]]:
    base = [s for s in images.busybox_layers()[0] if s.name not in ("etc/passwd", "etc/group")]
    lower = [
        *base,
        file("etc/passwd", PASSWD),
        file("etc/group", GROUP),
        file("etc/doomed", "whited out by the upper layer\n"),
        directory("home"),
        directory("home/app", 0o750, uid=1234, gid=2345),
        directory("opaque"),
        file("opaque/old", "hidden by the opaque marker\n"),
    ]
    upper = [
        whiteout("etc/doomed"),
        directory("work", 0o755, uid=1234, gid=2345),
        file("work/data", "owned by app\n", uid=1234, gid=2345),
        opaque("opaque"),
        file("opaque/new", "new\n"),
    ]
    return [lower, upper]


def _config(**config: Any) -> dict[str, Any]:
    return {"config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": [SCRIPT], **config}}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    root = tmp_path_factory.mktemp("bundle-images")
    layers = _layers()
    path = root / "layout"
    app = images.build_oci_layout(
        path,
        layers,
        _config(User="app", WorkingDir="/work", Labels={"lab.test": "bundle"}),
        tag="app",
    )
    images.build_oci_layout(path, layers, _config(), tag="root")
    images.build_oci_layout(path, layers, _config(User="ghost"), tag="ghost")
    archive = images.to_docker_archive(app, "app", root / "app.docker.tar", "lab/bundle:app")
    return Fixture(app, archive)


# -- helpers ------------------------------------------------------------------------------


def build(run: OccystrapRunner, source: str, dest: str) -> subprocess.CompletedProcess[bytes]:
    return run("process", source, dest)


def assert_ok(done: subprocess.CompletedProcess[bytes]) -> None:
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def assert_failed(done: subprocess.CompletedProcess[bytes], status: int, text: str) -> str:
    err = done.stderr.decode(errors="replace").strip()
    assert done.returncode == status, err
    assert len(err.splitlines()) == 1, err
    assert text in err, err
    return err


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def assert_no_bundle(bundle: Path) -> None:
    """No bundle, and no work directory left next to where it would be."""
    assert not os.path.lexists(bundle)
    assert leftovers(bundle.parent) == []


def check_bundle(bundle: Path) -> dict[str, Any]:
    """Exactly config.json and rootfs/, a schema-valid config; returns the config."""
    assert sorted(os.listdir(bundle)) == ["config.json", "rootfs"]
    assert leftovers(bundle.parent) == []
    spec: dict[str, Any] = json.loads((bundle / "config.json").read_bytes())
    validate("runtime", spec)
    return spec


def runc_run(tmp_path: Path, bundle: Path) -> str:
    runc = require("runc")
    if not IS_ROOT:
        pytest.skip("runc run is tested as root here")
    state = tmp_path / "runc-state"
    name = f"occystrap-bundle-{uuid.uuid4().hex[:12]}"
    try:
        done = subprocess.run(
            [runc, "--root", str(state), "run", "--bundle", str(bundle), name],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    finally:
        subprocess.run([runc, "--root", str(state), "delete", "-f", name], capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- bundles that boot --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "scheme"), [("ocidir", "oci"), ("tar", "oci"), ("ocidir", "bundle")]
)
def test_bundle_boots_with_runc(
    image: Fixture, tmp_path: Path, run_occystrap: OccystrapRunner, source: str, scheme: str
) -> None:
    src = f"ocidir://{image.layout.path}:app" if source == "ocidir" else f"tar://{image.archive}"
    bundle = tmp_path / "out" / "bundle"  # the parent is created too
    done = build(run_occystrap, src, f"{scheme}://{bundle}")
    assert_ok(done)
    assert f"to {bundle} as an OCI runtime bundle (2 layers)" in done.stderr.decode()

    spec = check_bundle(bundle)
    assert spec["process"]["user"] == {"uid": 1234, "gid": 2345}
    assert spec["process"]["cwd"] == "/work"
    assert spec["process"]["args"] == ["/bin/sh", "-c", SCRIPT]
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["annotations"]["lab.test"] == "bundle"
    assert "HOME=/home/app" in spec["process"]["env"]

    rootfs = bundle / "rootfs"
    assert not os.path.lexists(rootfs / "etc/doomed")
    assert sorted(os.listdir(rootfs / "opaque")) == ["new"]
    assert not any(".wh." in p for p in snapshot(rootfs))
    st = os.stat(rootfs / "work/data")
    assert (st.st_uid, st.st_gid) == ((1234, 2345) if IS_ROOT else (os.geteuid(), os.getegid()))
    assert os.stat(bundle).st_mode & 0o777 == 0o700

    assert runc_run(tmp_path, bundle) == APP_OUTPUT


def test_rootless_bundle(image: Fixture, tmp_path: Path, run_occystrap: OccystrapRunner) -> None:
    bundle = tmp_path / "bundle"
    assert_ok(
        build(run_occystrap, f"ocidir://{image.layout.path}:root", f"oci://{bundle}?rootless=true")
    )
    spec = check_bundle(bundle)
    linux = spec["linux"]
    assert {"type": "user"} in linux["namespaces"]
    assert {"type": "network"} not in linux["namespaces"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    # unpacked without chown: everything belongs to the caller, i.e. to root inside
    st = os.stat(bundle / "rootfs/work/data")
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    out = runc_run(tmp_path, bundle)
    assert out == "hello from 0:0 in /\nnew\n"


def test_rootless_refuses_a_non_root_user(
    image: Fixture, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    bundle = tmp_path / "bundle"
    done = build(
        run_occystrap, f"ocidir://{image.layout.path}:app", f"oci://{bundle}?rootless=true"
    )
    assert_failed(done, 2, "maps only root, but the image runs as 1234:2345")
    assert_no_bundle(bundle)


@pytest.mark.skipif(not IS_ROOT, reason="the umoci comparison needs root (chown)")
def test_rootfs_matches_umoci_unpack(
    image: Fixture, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    ours = tmp_path / "ours"
    assert_ok(build(run_occystrap, f"ocidir://{image.layout.path}:app", f"oci://{ours}"))
    theirs = tmp_path / "theirs"
    umoci("unpack", "--image", f"{image.layout.path}:app", theirs)
    ours_snap, theirs_snap = snapshot(ours / "rootfs"), snapshot(theirs / "rootfs")
    assert sorted(ours_snap) == sorted(theirs_snap)
    for path in ours_snap:
        mine, umocis = dict(ours_snap[path]), dict(theirs_snap[path])
        if path == ".":  # made by each tool, not by the image
            mine.pop("mtime_ns"), umocis.pop("mtime_ns")
        assert mine == umocis, path


# -- failures leave nothing -----------------------------------------------------------------


def test_unknown_user_is_an_error(
    image: Fixture, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    bundle = tmp_path / "bundle"
    done = build(run_occystrap, f"ocidir://{image.layout.path}:ghost", f"oci://{bundle}")
    assert_failed(done, 1, "user 'ghost' not found in the image's /etc/passwd")
    assert_no_bundle(bundle)


def test_diff_id_mismatch_of_the_last_layer(
    image: Fixture, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    """The second layer's diff_id is only known wrong at its end: nothing may be left."""
    good = images.build_oci_layout(tmp_path / "layout", _layers(), _config(), tag="good")
    wrong = [good.diff_ids[0], "sha256:" + "0" * 64]
    bad = images.build_oci_layout(
        tmp_path / "layout", _layers(), {**_config(), "rootfs": {"diff_ids": wrong}}, tag="bad"
    )
    assert bad.config["rootfs"]["diff_ids"] == wrong
    bundle = tmp_path / "bundle"
    done = build(run_occystrap, f"ocidir://{tmp_path / 'layout'}:bad", f"oci://{bundle}")
    assert_failed(done, 1, "digest mismatch for layer 1 (diff_id)")
    assert_no_bundle(bundle)


@pytest.fixture
def escapes() -> Iterator[None]:
    """Nothing new may appear at the hostile fixtures' escape targets; the sentinel stays."""
    if not os.path.exists(SENTINEL):
        Path(SENTINEL).write_text("sentinel\n")
    sentinel = Path(SENTINEL).read_bytes()
    before = set(glob.glob(ESCAPE_DIR + "*")) | set(glob.glob(ESCAPE_DIR + "/*"))
    yield
    after = set(glob.glob(ESCAPE_DIR + "*")) | set(glob.glob(ESCAPE_DIR + "/*"))
    assert after - before == set()
    assert Path(SENTINEL).read_bytes() == sentinel


REFUSED = {
    "traversal": "path climbs above the root",
    "absolute": "absolute path",
    "symlink-escape": "a symlink on the path climbs above the root",
    "hardlink-escape": "path climbs above the root",
    "bare-whiteout": "names nothing",
}


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
@pytest.mark.usefixtures("escapes")
def test_hostile_layers(tmp_path: Path, run_occystrap: OccystrapRunner, kind: str) -> None:
    layout = hostile_oci_layout(kind, tmp_path / "layout")
    bundle = tmp_path / "bundle"
    done = build(run_occystrap, f"ocidir://{layout.path}:{kind}", f"oci://{bundle}")
    if kind in REFUSED:
        assert_failed(done, 1, REFUSED[kind])
        assert_no_bundle(bundle)
        return
    # not an attack: the later duplicate wins; devices are made only when privileged
    assert_ok(done)
    rootfs = bundle / "rootfs"
    if kind == "duplicate":
        assert (rootfs / "dup.txt").read_text() == "second\n"
        assert (rootfs / "file-then-dir/inner.txt").read_text() == "inner\n"
    else:
        assert os.path.lexists(rootfs / "dev/lab-null") == IS_ROOT


def test_hostile_kinds_are_all_covered() -> None:
    assert set(REFUSED) <= set(HOSTILE_KINDS)
    assert set(HOSTILE_KINDS) - set(REFUSED) == {"duplicate", "device"}


# -- the target path ---------------------------------------------------------------------


def test_existing_paths(image: Fixture, tmp_path: Path, run_occystrap: OccystrapRunner) -> None:
    src = f"ocidir://{image.layout.path}:app"
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("mine\n")
    assert_failed(build(run_occystrap, src, f"oci://{full}"), 1, "exists and is not empty")
    assert sorted(os.listdir(full)) == ["keep"]

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert_failed(build(run_occystrap, src, f"oci://{a_file}"), 1, "is not a directory")
    assert a_file.read_text() == "x"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert_ok(build(run_occystrap, src, f"oci://{empty}"))
    check_bundle(empty)

    # a second run onto the finished bundle is refused, and leaves it as it was
    before = snapshot(empty)
    assert_failed(build(run_occystrap, src, f"oci://{empty}"), 1, "exists and is not empty")
    assert snapshot(empty) == before
    assert [p for p in os.listdir(tmp_path) if ".tmp-" in p] == []
    shutil.rmtree(empty)
