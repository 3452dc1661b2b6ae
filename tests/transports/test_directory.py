"""dir:// sink: default and unique_names layouts, dedup, expand (judged against umoci), failures,
several writers sharing one store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from lab import images
from lab.edgecase import EXPECT, check_rootfs
from lab.ocilayout import LayoutInfo, canonical_json
from lab.tarspec import file
from lab.tools import skopeo, umoci
from occystrap import api
from occystrap.errors import BlobNotFound, IntegrityError, MalformedInput, OutputError, SizeMismatch
from occystrap.events import Stats
from occystrap.transports.base import RunContext

CONTAINERD_NAME = "io.containerd.image.name"


# -- helpers ------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def hexof(digest: str) -> str:
    return digest.split(":", 1)[1]


def named(info: LayoutInfo, dst: Path, full_name: str) -> Path:
    """A copy of ``info`` whose index.json entry carries containerd's full image name."""
    shutil.copytree(info.path, dst)
    index = json.loads((dst / "index.json").read_text())
    index["manifests"][0]["annotations"][CONTAINERD_NAME] = full_name
    (dst / "index.json").write_bytes(canonical_json(index))
    return dst


def layer_dirs(store: Path) -> list[str]:
    return sorted(p.parent.name for p in store.glob("*/layer.tar"))


def leftovers(store: Path) -> list[str]:
    return sorted(str(p) for p in store.rglob(".tmp-*"))


def catalog(store: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((store / "catalog.json").read_text())
    return doc


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[Any, ...]]:
    """path -> (type, mode, uid, gid, size+sha256 | link target | rdev) for every entry."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            st = os.lstat(path)
            entry: tuple[Any, ...] = (
                stat.S_IFMT(st.st_mode),
                oct(stat.S_IMODE(st.st_mode)),
                st.st_uid,
                st.st_gid,
            )
            if stat.S_ISREG(st.st_mode):
                entry += (st.st_size, sha256_file(path))
            elif stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(path),)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry += (st.st_rdev,)
            out[rel] = entry
    return out


def as_docker_archive(store: Path, manifest_file: str, dst: Path) -> Path:
    """Pack what a manifest file names into a docker-save tarball (for skopeo to judge)."""
    entries = json.loads((store / manifest_file).read_text())
    with tarfile.open(dst, "w") as tar:
        for entry in entries:
            tar.add(store / entry["Config"], entry["Config"])
            for layer in entry["Layers"]:
                tar.add(store / layer, layer)
        tar.add(store / manifest_file, "manifest.json")
    return dst


# -- layouts ------------------------------------------------------------------------------------


def test_default_layout(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    src = named(busybox_layout, tmp_path / "src", "lab/busybox:1.0")
    out = tmp_path / "out"
    result = api.process(f"ocidir://{src}", f"dir://{out}")
    assert "\n" not in result.description and "lab/busybox:1.0" in result.description
    config_hex, diff_hex = hexof(busybox_layout.config_digest), hexof(busybox_layout.diff_ids[0])
    assert sorted(os.listdir(out)) == sorted(
        [f"{config_hex}.json", diff_hex, "manifest.json", "catalog.json", "catalog.json.lock"]
    )
    config = out / f"{config_hex}.json"
    assert (
        config.read_bytes() == (src / "blobs" / "sha256" / config_hex).read_bytes()
    )  # exact bytes
    assert sha256_file(config) == config_hex
    assert sha256_file(out / diff_hex / "layer.tar") == diff_hex
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == [
        {
            "Config": f"{config_hex}.json",
            "RepoTags": ["lab/busybox:1.0"],
            "Layers": [f"{diff_hex}/layer.tar"],
        }
    ]
    assert catalog(out) == {
        "lab/busybox": {
            "1.0": {
                "manifest": "manifest.json",
                "config": f"{config_hex}.json",
                "layers": [f"{diff_hex}/layer.tar"],
            }
        }
    }
    archive = as_docker_archive(out, "manifest.json", tmp_path / "busybox.tar")
    inspected = json.loads(
        skopeo("inspect", f"docker-archive:{archive}:lab/busybox:1.0").stdout
    )  # by RepoTag
    assert inspected["Layers"] == busybox_layout.diff_ids
    skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'back'}:b")  # checks the diff_ids


def test_unique_names_store_shares_layers(
    busybox_layout: LayoutInfo, edge_layout: LayoutInfo, tmp_path: Path
) -> None:
    base = images.busybox_layers()[0]
    app = images.build_oci_layout(tmp_path / "app", [base, [file("app.txt", "app\n")]])
    busy = named(busybox_layout, tmp_path / "busy", "lab/busybox:1.0")
    app_named = named(app, tmp_path / "app-named", "registry.example:5000/team/app:v1")
    store = tmp_path / "store"
    api.process(f"ocidir://{busy}", f"dir://{store}?unique_names=true")
    api.process(f"ocidir://{edge_layout.path}", f"dir://{store}?unique_names=true")
    ctx = RunContext(stats=Stats())
    result = api.process(f"ocidir://{app_named}", f"dir://{store}?unique_names=true", ctx=ctx)
    # the shared base layer was neither read nor written again
    assert [w.outcome for w in result.layers] == ["skipped", "converted"]
    assert ctx.stats.layers_skipped == 1 and ctx.stats.bytes_read == app.layer_sizes[1]
    assert "1 already stored" in result.description
    assert layer_dirs(store) == sorted(
        {hexof(d) for d in busybox_layout.diff_ids + edge_layout.diff_ids + app.diff_ids}
    )
    cat = catalog(store)
    assert sorted((name, tag) for name, tags in cat.items() for tag in tags) == [
        ("lab/busybox", "1.0"), ("registry.example:5000/team/app", "v1"), ("unnamed", "latest"),
    ]  # fmt: skip
    app_entry = cat["registry.example:5000/team/app"]["v1"]
    assert app_entry["manifest"] == "manifest-registry.example_5000_team_app-v1.json"
    assert app_entry["layers"] == [f"{hexof(d)}/layer.tar" for d in app.diff_ids]
    for tags in cat.values():
        for entry in tags.values():
            assert (
                json.loads((store / entry["manifest"]).read_text())[0]["Layers"] == entry["layers"]
            )
            assert sha256_file(store / entry["config"]) == entry["config"].removesuffix(".json")
    assert not (store / "manifest.json").exists() and leftovers(store) == []
    archive = as_docker_archive(store, app_entry["manifest"], tmp_path / "app.tar")
    skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'back'}:app")


def test_filtered_layer_already_stored_is_dropped(
    busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    first = api.process(
        f"ocidir://{busybox_layout.path}:latest",
        f"dir://{store}?unique_names=true",
        ["exclude:pattern=etc/group"],
    )
    before = layer_dirs(store)
    assert first.layers[0].outcome == "rewritten" and first.layers[0].diff_id is not None
    assert before == [first.layers[0].diff_id.hex]
    assert hexof(busybox_layout.diff_ids[0]) not in before
    src2 = shutil.copytree(busybox_layout.path, tmp_path / "again")
    index = json.loads((src2 / "index.json").read_text())
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = "again"
    (src2 / "index.json").write_bytes(canonical_json(index))
    second = api.process(
        f"ocidir://{src2}", f"dir://{store}?unique_names=true", ["exclude:pattern=etc/group"]
    )
    assert second.layers[0].diff_id == first.layers[0].diff_id
    assert "1 already stored" in second.description
    assert layer_dirs(store) == before and leftovers(store) == []
    assert sorted(catalog(store)["unnamed"]) == ["again", "latest"]


# -- expand -------------------------------------------------------------------------------------


def test_expand_matches_umoci_unpack(edge_layout: LayoutInfo, tmp_path: Path) -> None:
    bundle = tmp_path / "umoci"
    umoci("unpack", "--image", f"{edge_layout.path}:latest", str(bundle))
    out = tmp_path / "out"
    api.process(f"ocidir://{edge_layout.path}", f"dir://{out}?expand=true")
    ours = out / "rootfs"
    assert check_rootfs(ours) == []
    skip = tuple(EXPECT.spec_only)  # where umoci knowingly departs from the spec
    theirs_tree, ours_tree = tree(bundle / "rootfs", skip), tree(ours, skip)
    assert sorted(theirs_tree) == sorted(ours_tree)
    diffs = {
        p: (theirs_tree[p], ours_tree[p]) for p in theirs_tree if theirs_tree[p] != ours_tree[p]
    }
    assert diffs == {}
    assert (out / "catalog.json").exists() and leftovers(out) == []


def test_expand_from_stored_layers(
    edge_layout: LayoutInfo, busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    """A second image whose layers are all in the store is expanded from the stored files."""
    store = tmp_path / "store"
    opts = "unique_names=true&expand=true"
    api.process(f"ocidir://{edge_layout.path}", f"dir://{store}?{opts}")
    again = shutil.copytree(edge_layout.path, tmp_path / "again")
    index = json.loads((again / "index.json").read_text())
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = "again"
    (again / "index.json").write_bytes(canonical_json(index))
    ctx = RunContext(stats=Stats())
    result = api.process(f"ocidir://{again}", f"dir://{store}?{opts}", ctx=ctx)
    assert [w.outcome for w in result.layers] == ["skipped"] * 3 and ctx.stats.bytes_read == 0
    first, second = store / "rootfs-unnamed-latest", store / "rootfs-unnamed-again"
    assert check_rootfs(second) == []
    assert tree(first) == tree(second)
    assert catalog(store)["unnamed"]["again"]["rootfs"] == "rootfs-unnamed-again"
    # replacing an expanded image swaps its rootfs whole
    api.process(f"ocidir://{busybox_layout.path}", f"dir://{store}?{opts}")
    assert (first / "bin" / "busybox").is_file() and not (first / "opt").exists()
    assert leftovers(store) == []


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "errors"),
    [
        ("flip", (IntegrityError, MalformedInput)),
        ("truncate", (SizeMismatch,)),
        ("remove", (BlobNotFound,)),
    ],
)
def test_failed_run_leaves_no_complete_looking_output(
    edge_layout: LayoutInfo,
    busybox_layout: LayoutInfo,
    tmp_path: Path,
    how: str,
    errors: tuple[type[Exception], ...],
) -> None:
    src = shutil.copytree(edge_layout.path, tmp_path / "src")
    blob = src / "blobs" / "sha256" / hexof(edge_layout.layer_digests[2])
    data = bytearray(blob.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
    elif how == "truncate":
        blob.write_bytes(bytes(data[:-7]))
    else:
        blob.unlink()
    fresh = tmp_path / "fresh"
    with pytest.raises(errors) as err:
        api.process(f"ocidir://{src}", f"dir://{fresh}?expand=true")
    assert "\n" not in str(err.value)
    names = set(os.listdir(fresh))
    assert not names & {"manifest.json", "catalog.json", "rootfs"}, names
    assert leftovers(fresh) == []
    store = tmp_path / "store"
    api.process(f"ocidir://{busybox_layout.path}", f"dir://{store}?unique_names=true&expand=true")
    before = (store / "catalog.json").read_bytes()
    with pytest.raises(errors):
        api.process(f"ocidir://{src}", f"dir://{store}?unique_names=true&expand=true")
    assert (store / "catalog.json").read_bytes() == before
    assert sorted(p.name for p in store.glob("manifest*")) == ["manifest-unnamed-latest.json"]
    assert sorted(p.name for p in store.glob("rootfs*")) == ["rootfs-unnamed-latest"]
    assert leftovers(store) == []


def test_not_a_directory(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        api.process(f"ocidir://{busybox_layout.path}", f"dir://{target}")


# -- several writers ----------------------------------------------------------------------------

_WRITER = """
import sys, time
from occystrap import api
src, dst, start, expand = sys.argv[1:5]
time.sleep(max(0.0, float(start) - time.time()))  # all writers start together
for k in range(4):
    api.process(f"ocidir://{src}:img-{k}", f"dir://{dst}?unique_names=true&expand={expand}")
"""


@pytest.mark.parametrize("expand", ["false", "true"])
def test_concurrent_writers_share_one_store(tmp_path: Path, expand: str) -> None:
    base = images.busybox_layers()[0]
    sources = [tmp_path / f"src{i}" for i in range(4)]
    for i, path in enumerate(sources):
        for k in range(4):  # four images per source layout; each writer process writes all four
            images.build_oci_layout(path, [base, [file(f"img{i}-{k}.txt", "x\n")]], tag=f"img-{k}")
        index = json.loads((path / "index.json").read_text())
        for entry in index["manifests"]:
            tag = entry["annotations"]["org.opencontainers.image.ref.name"]
            entry["annotations"][CONTAINERD_NAME] = f"lab/app{i}:{tag.removeprefix('img-')}"
        (path / "index.json").write_bytes(canonical_json(index))
    store = tmp_path / "store"
    start = str(time.time() + 2)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(s), str(store), start, expand],
            stderr=subprocess.PIPE,
        )
        for s in sources
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    cat = catalog(store)
    assert sorted(cat) == [f"lab/app{i}" for i in range(4)]
    for i in range(4):
        assert sorted(cat[f"lab/app{i}"]) == ["0", "1", "2", "3"]
        for tag, entry in cat[f"lab/app{i}"].items():
            assert entry["manifest"] == f"manifest-lab_app{i}-{tag}.json"
            assert json.loads((store / entry["manifest"]).read_text())[0]["RepoTags"] == [
                f"lab/app{i}:{tag}"
            ]
            for layer in entry["layers"]:
                assert sha256_file(store / layer) == layer.split("/", 1)[0]
            if expand == "true":
                assert (store / entry["rootfs"] / f"img{i}-{tag}.txt").is_file()
                assert (store / entry["rootfs"] / "bin" / "busybox").is_file()
    assert len(layer_dirs(store)) == 1 + 16
    assert leftovers(store) == []
