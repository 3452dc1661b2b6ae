"""SIGKILL at seeded points of a pull, a push, a tar, dir and ocidir write; then the same run again.

Each operation is killed at ``POINTS`` seeded fractions of its progress (one per equal
stratum; ``OCCYSTRAP_KILL_POINTS`` / ``OCCYSTRAP_KILL_SEED`` change them). Progress is bytes
at a loopback counting proxy for registry runs and bytes on disk for local writes. After the
kill: no complete-looking output may exist (no final tar, no index.json entry for the ref,
no catalog/manifest/rootfs entry, no tag in the registry) unless the kill came after the
commit, and then the output must be entirely correct; every blob or layer file already
named by its digest must hash to that name; a leftover temporary tar must be refused by
skopeo. The rerun must complete with the right digests and must not transfer again what
was already complete: blobs stored in the layout are not fetched, a partial download is
continued at its offset, blobs the registry holds are not uploaded again (HEAD first), and
layer files already stored keep their inode.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from lab.ocilayout import LayoutInfo
from lab.registry import Registry
from lab.tools import skopeo

from .harness import (
    POINTS,
    KillImage,
    assert_layout_blobs_intact,
    has_blob,
    has_tag,
    index_refs,
    isolated_env,
    kill_fractions,
    occystrap_cmd,
    ok,
    record,
    run,
    run_and_kill,
    sha256_file,
    stale_files,
    tree_bytes,
)
from .netproxy import RegistryProxy

TAG = "lab/kill:v1"


# -- what a finished output looks like --------------------------------------------------------


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """path -> (type, mode, uid, gid, size, sha256 | link target) of every entry under root."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            entry: tuple[Any, ...] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
            )
            if stat.S_ISREG(st.st_mode):
                entry += (st.st_size, sha256_file(path))
            elif stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(path),)
            out[path.relative_to(root).as_posix()] = entry
    return out


def store_layers(store: Path) -> dict[str, int]:
    """Layer files of a dir:// store that hash to their name: ``sha256:HEX`` -> inode.

    Asserts there is no layer file whose content does not match its name.
    """
    found = {}
    for layer in store.glob("*/layer.tar"):
        digest = "sha256:" + layer.parent.name
        assert sha256_file(layer) == digest, f"torn or corrupt layer file {layer}"
        found[digest] = layer.stat().st_ino
    for config in store.glob("*.json"):
        if len(config.stem) == 64:
            assert sha256_file(config) == "sha256:" + config.stem, f"corrupt config {config}"
    return found


@dataclass(frozen=True)
class Baseline:
    """A finished output of a local write, judged once by skopeo; reruns must equal it."""

    kind: str
    source: str
    uri_tail: str
    size: int  # bytes on disk when finished: 100 % of the progress measure
    tar_sha: str | None = None
    catalog: dict[str, Any] | None = None
    rootfs: dict[str, tuple[Any, ...]] | None = None
    manifest_digest: str | None = None


#: kind -> (source, destination); ``{out}`` is the test's output directory.
LOCAL = {
    "ocidir-to-tar": ("ocidir", f"tar://{{out}}/image.tar?tag={TAG}"),
    "tar-to-dir": ("tar", "dir://{out}/store?unique_names=true"),
    "tar-to-dir-expand": ("tar", "dir://{out}/store?expand=true"),
    "ocidir-to-ocidir": ("ocidir", "ocidir://{out}/layout:v1"),
    "tar-to-ocidir": ("tar", "ocidir://{out}/layout:v1"),
}


def _as_docker_archive(store: Path, manifest_file: str, dst: Path) -> Path:
    entries = json.loads((store / manifest_file).read_text())
    with tarfile.open(dst, "w") as tar:
        for entry in entries:
            tar.add(store / entry["Config"], entry["Config"])
            for layer in entry["Layers"]:
                tar.add(store / layer, layer)
        tar.add(store / manifest_file, "manifest.json")
    return dst


def only_entry(catalog: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(name, tag, entry) of a catalog holding one image."""
    ((name, tags),) = catalog.items()
    ((tag, entry),) = tags.items()
    return name, tag, entry


@pytest.fixture(scope="module")
def sources(kill_layout: LayoutInfo, kill_archive: Path) -> dict[str, str]:
    return {"ocidir": f"ocidir://{kill_layout.path}:latest", "tar": f"tar://{kill_archive}"}


@pytest.fixture(scope="module")
def baselines(
    kill_layout: LayoutInfo, sources: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Baseline]:
    out: dict[str, Baseline] = {}
    for kind, (source, template) in LOCAL.items():
        work = tmp_path_factory.mktemp(f"baseline-{kind}")
        env = isolated_env(work)
        dest = work / "out"
        dest.mkdir()
        ok(run(occystrap_cmd("process", sources[source], template.format(out=dest)), env))
        size = tree_bytes(dest)
        base = Baseline(kind, source, template, size)
        if kind.endswith("-to-tar"):
            skopeo("copy", f"docker-archive:{dest / 'image.tar'}", f"oci:{work / 'judge'}:x")
            base = replace(base, tar_sha=sha256_file(dest / "image.tar"))
        elif "-to-dir" in kind:
            store = dest / "store"
            catalog = json.loads((store / "catalog.json").read_text())
            _, _, entry = only_entry(catalog)
            archive = _as_docker_archive(store, entry["manifest"], work / "judge.tar")
            skopeo("copy", f"docker-archive:{archive}", f"oci:{work / 'judge'}:x")
            rootfs = tree(store / entry["rootfs"]) if "rootfs" in entry else None
            base = replace(base, catalog=catalog, rootfs=rootfs)
        else:
            skopeo("copy", f"oci:{dest / 'layout'}:v1", f"oci:{work / 'judge'}:x")
            digest = index_refs(dest / "layout")["v1"]
            if source == "ocidir":
                assert digest == kill_layout.manifest_digest
            base = replace(base, manifest_digest=digest)
        out[kind] = base
    return out


def leftover_tars_refused(out: Path) -> int:
    """skopeo must refuse every temporary tar a killed run left; returns how many there were."""
    leftovers = sorted(out.glob("image.tar.tmp-*"))
    for path in leftovers:
        judged = skopeo("inspect", f"docker-archive:{path}", check=False)
        assert judged.returncode != 0, f"skopeo accepts the leftover {path}"
    return len(leftovers)


def check_tar(path: Path, tar_sha: str) -> bool:
    """True when the final tar exists (then it must equal the judged baseline)."""
    if not path.exists():
        return False
    assert sha256_file(path) == tar_sha, "a complete-looking tar that differs from the baseline"
    return True


def check_ocidir(
    layout: Path, manifest_digest: str, blobs: dict[str, int]
) -> tuple[bool, dict[str, int]]:
    """(ref v1 exists, intact blobs -> inode); a v1 entry must name a fully present image."""
    inodes = assert_layout_blobs_intact(layout)
    ref = index_refs(layout).get("v1")
    if ref is None:
        return False, inodes
    assert ref == manifest_digest
    assert set(blobs) <= set(inodes), "index.json names an image with missing blobs"
    return True, inodes


def check_store(store: Path, base: Baseline) -> tuple[bool, dict[str, int]]:
    """(image recorded, intact layer files -> inode) for a dir:// store after a kill."""
    inodes = store_layers(store) if store.exists() else {}
    assert base.catalog is not None
    name, _, entry = only_entry(base.catalog)
    catalog_path = store / "catalog.json"
    recorded = catalog_path.exists() and name in json.loads(catalog_path.read_text())
    manifest = store / entry["manifest"]
    rootfs = store / entry["rootfs"] if "rootfs" in entry else None
    if recorded:
        assert json.loads(catalog_path.read_text()) == base.catalog
    if manifest.exists():  # written just before the catalog entry, complete when present
        assert json.loads(manifest.read_text())[0]["Layers"] == entry["layers"]
        for layer in entry["layers"]:
            assert (store / layer).is_file()
    if rootfs is not None and rootfs.exists():
        assert tree(rootfs) == base.rootfs, "a complete-looking rootfs that differs"
    return recorded, inodes


# -- local writes -------------------------------------------------------------------------------


@pytest.mark.parametrize("point", range(POINTS))
@pytest.mark.parametrize("kind", list(LOCAL))
def test_local_write_killed_then_rerun(
    kind: str,
    point: int,
    kill_layout: LayoutInfo,
    sources: dict[str, str],
    baselines: dict[str, Baseline],
    tmp_path: Path,
) -> None:
    base = baselines[kind]
    fraction = kill_fractions(f"write-{kind}")[point]
    env = isolated_env(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    spool = Path(env["OCCYSTRAP_TEMP_DIR"])
    cmd = occystrap_cmd("process", sources[base.source], base.uri_tail.format(out=out))
    first = run_and_kill(cmd, env, lambda: tree_bytes(out, spool), int(fraction * base.size))
    stored: dict[str, int] = {}
    leftovers = 0
    if base.tar_sha is not None:
        complete = check_tar(out / "image.tar", base.tar_sha)
        leftovers = leftover_tars_refused(out)
    elif base.manifest_digest is not None:
        complete, stored = check_ocidir(out / "layout", base.manifest_digest, {})
    else:
        complete, stored = check_store(out / "store", base)
    assert complete or first.killed, "the run ended by itself without a complete output"
    spooled = [p for p in stale_files(out, spool) if "occystrap-spool-" in p]
    assert not spooled, f"the killed run left spool files: {spooled}"  # they are unnamed
    second = ok(run(cmd, env))
    reused = 0
    if base.tar_sha is not None:
        assert check_tar(out / "image.tar", base.tar_sha)
    elif base.manifest_digest is not None:
        done, after = check_ocidir(out / "layout", base.manifest_digest, {})
        assert done
        skopeo("copy", f"oci:{out / 'layout'}:v1", f"oci:{tmp_path / 'judge'}:x")
        for digest, inode in stored.items():
            assert after[digest] == inode, f"{digest} was written again"
        reused = len(stored)
        if base.source == "ocidir":  # stored layers are not even read again
            layers = sum(1 for d in kill_layout.layer_digests if d in stored)
            assert f"({layers} already present)" in second.stderr.decode()
    else:
        done, after = check_store(out / "store", base)
        assert done
        for digest, inode in stored.items():
            assert after[digest] == inode, f"layer {digest} was written again"
        reused = sum(1 for d in kill_layout.diff_ids if d in stored)
        assert f"{reused} already stored" in second.stderr.decode()
    record(
        "kill",
        operation=kind.replace("-to-", " -> "),
        fraction=fraction,
        target=int(fraction * base.size),
        total=base.size,
        progress_at_kill=first.progress,
        killed=first.killed,
        complete_after_kill=complete,
        stored_after_kill=len(stored),
        reused_on_rerun=reused,
        leftover_tmp_tars=leftovers,
        stale_after_rerun=len(stale_files(out, spool)),
        rerun="ok",
    )


# -- registry pulls ----------------------------------------------------------------------------


def partial_files(env: dict[str, str], suffix: str = ".partial") -> dict[str, int]:
    """``sha256:HEX`` -> bytes kept in the cross-run download cache: partial downloads, or
    with ``suffix=".blob"`` complete verified blobs kept for a rerun."""
    root = Path(env["XDG_CACHE_HOME"]) / "occystrap" / "partial"
    if not root.is_dir():
        return {}
    return {
        "sha256:" + p.name.removeprefix("sha256-").removesuffix(suffix): p.stat().st_size
        for p in root.glob(f"sha256-*{suffix}")
    }


#: More than socket buffers and a chunk in flight can hold when a kill lands.
IN_FLIGHT_MAX = 16 << 20


def kept_files(env: dict[str, str]) -> dict[str, int]:
    """Partial downloads and complete blobs in the cache (a complete one wins)."""
    return {**partial_files(env), **partial_files(env, ".blob")}


@pytest.mark.parametrize("point", range(POINTS))
@pytest.mark.parametrize("kind", ["ocidir", "tar"])
def test_pull_killed_then_rerun(
    kind: str,
    point: int,
    kill_image: KillImage,
    baselines: dict[str, Baseline],
    registry_plain: Registry,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    fraction = kill_fractions(f"pull-{kind}")[point]
    out = tmp_path / "out"
    out.mkdir()
    tar_sha = baselines["ocidir-to-tar"].tar_sha
    assert tar_sha is not None
    dest = (
        f"ocidir://{out / 'layout'}:v1"
        if kind == "ocidir"
        else f"tar://{out / 'image.tar'}?tag={TAG}"
    )
    with RegistryProxy(registry_plain.host) as proxy:
        cmd = occystrap_cmd(
            "--insecure", "process", f"registry://{proxy.host}/{kill_image.repo}:v1", dest
        )
        first = run_and_kill(cmd, env, proxy.served, int(fraction * kill_image.total))
        first_served = {d: proxy.served(f"/blobs/{d}") for d in kill_image.blobs}
        stored: dict[str, int] = {}
        if kind == "ocidir":
            complete, stored = check_ocidir(
                out / "layout", kill_image.manifest_digest, kill_image.blobs
            )
        else:
            complete = check_tar(out / "image.tar", tar_sha)
            leftover_tars_refused(out)
        assert complete or first.killed
        partial = kept_files(env)
        proxy.reset()
        ok(run(cmd, env))
        dropped_complete = refetched_small = 0
        for digest, size in kill_image.blobs.items():
            served = proxy.served(f"/blobs/{digest}")
            gets = proxy.exchanges("GET", f"/blobs/{digest}")
            kept = partial.get(digest, 0)
            if digest in stored:
                assert not gets, f"{digest} is in the layout but was fetched again"
            elif kept:
                assert served == size - kept, (digest, size, kept, served)
                if kept < size:
                    assert [g.headers.get("range") for g in gets] == [f"bytes={kept}-"]
            else:
                assert served == size and len(gets) == 1, (digest, served, len(gets))
                # Served whole before the kill, yet not kept. A small blob can be all in
                # flight (sent, not yet received) when the kill lands, so only a big one
                # proves a dropped completed blob; the -j 1 test below pins small ones.
                if size >= IN_FLIGHT_MAX and first_served[digest] == size:
                    dropped_complete += size
                elif first_served[digest] == size:
                    refetched_small += size
        rerun_bytes = proxy.served("/blobs/")
    if kind == "ocidir":
        done, _ = check_ocidir(out / "layout", kill_image.manifest_digest, kill_image.blobs)
        assert done
        skopeo("copy", f"oci:{out / 'layout'}:v1", f"oci:{tmp_path / 'judge'}:x")
    else:
        assert check_tar(out / "image.tar", tar_sha)
    assert not kept_files(env), "a successful run must clean the download cache"
    record(
        "kill",
        operation=f"registry -> {kind}",
        fraction=fraction,
        target=int(fraction * kill_image.total),
        total=kill_image.total,
        progress_at_kill=first.progress,
        killed=first.killed,
        complete_after_kill=complete,
        stored_after_kill=len(stored),
        partial_after_kill=partial,
        rerun_blob_bytes=rerun_bytes,
        refetched_completed_big_bytes=dropped_complete,
        refetched_small_bytes=refetched_small,
        leftover_partials=kept_files(env),
        stale_after_rerun=len(
            stale_files(out, Path(env["OCCYSTRAP_TEMP_DIR"]), Path(env["XDG_CACHE_HOME"]))
        ),
        rerun="ok",
    )
    assert not dropped_complete, f"{dropped_complete} bytes of completed blobs fetched again"


# -- registry pushes ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", range(POINTS))
def test_push_killed_then_rerun(
    point: int,
    kill_image: KillImage,
    registry_plain: Registry,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    fraction = kill_fractions("push")[point]
    layout = kill_image.layout
    repo = f"reliability/push-{point}-{secrets.token_hex(3)}"
    blobs = dict(zip(layout.layer_digests, layout.layer_sizes, strict=True))
    blobs[layout.config_digest] = len((layout.blob(layout.config_digest)).read_bytes())
    total = sum(blobs.values())
    with RegistryProxy(registry_plain.host) as proxy:
        cmd = occystrap_cmd(
            "--insecure",
            "process",
            f"ocidir://{layout.path}:latest",
            f"registry://{proxy.host}/{repo}:v1",
        )
        first = run_and_kill(
            cmd, env, lambda: proxy.sent_up("/blobs/uploads/"), int(fraction * total)
        )
        tagged = has_tag(registry_plain, repo, "v1")
        assert tagged or first.killed
        present = {d for d in blobs if has_blob(registry_plain, repo, d)}
        if tagged:
            assert present == set(blobs)
        proxy.reset()
        ok(run(cmd, env))
        # what the rerun found present (HEAD 200); a blob whose upload the registry was still
        # committing when probed above may have become present since
        held = {
            d for d in blobs if any(e.status == 200 for e in proxy.exchanges("HEAD", f"/blobs/{d}"))
        }
        assert present <= held
        missing = set(blobs) - held
        puts = [
            e.path.split("digest=")[1].split("&")[0]
            for e in proxy.exchanges("PUT", "/blobs/uploads/")
        ]
        assert {p.replace("%3A", ":") for p in puts} == missing  # present blobs: never uploaded
        assert len(proxy.exchanges("POST", "/blobs/uploads/")) == len(missing)
        assert proxy.sent_up("/blobs/uploads/") == sum(blobs[d] for d in missing)
    raw = skopeo(
        "inspect", "--raw", *registry_plain.skopeo_args("plain"), registry_plain.ref(repo, "v1")
    ).stdout
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == layout.manifest_digest
    skopeo(
        "copy",
        *registry_plain.skopeo_args("src"),
        registry_plain.ref(repo, "v1"),
        f"oci:{tmp_path / 'judge'}:x",
    )
    record(
        "kill",
        operation="ocidir -> registry",
        fraction=fraction,
        target=int(fraction * total),
        total=total,
        progress_at_kill=first.progress,
        killed=first.killed,
        complete_after_kill=tagged,
        blobs_present_after_kill=len(present),
        reuploaded=0,
        rerun_upload_bytes=sum(blobs[d] for d in missing),
        rerun="ok",
    )


def test_pull_to_tar_rerun_does_not_fetch_a_completed_big_blob_again(
    kill_image: KillImage,
    baselines: dict[str, Baseline],
    registry_plain: Registry,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """With ``-j 1`` the run is killed when the 17 MiB layer is complete (its partial file
    promoted to a kept complete blob) while the 34 MiB one is half fetched: the rerun reads
    the first (and the 1 MB busybox layer before it) from disk, fetches only the rest of the
    second, and leaves the cache empty."""
    small, big17, big34 = kill_image.layout.layer_digests[0:3]
    cache = Path(env["XDG_CACHE_HOME"]) / "occystrap" / "partial"
    seen: set[str] = set()

    def progress() -> int:
        have = partial_files(env)
        seen.update(have)
        return int(big17 in seen and big17 not in have and have.get(big34, 0) > (4 << 20))

    out = tmp_path / "out"
    out.mkdir()
    with RegistryProxy(registry_plain.host) as proxy:
        cmd = occystrap_cmd(
            "--insecure",
            "-j",
            "1",
            "process",
            f"registry://{proxy.host}/{kill_image.repo}:v1",
            f"tar://{out / 'image.tar'}?tag={TAG}",
        )
        first = run_and_kill(cmd, env, progress, 1)
        assert first.killed and cache.is_dir()
        assert {small, big17} <= set(partial_files(env, ".blob"))
        proxy.reset()
        ok(run(cmd, env))
        assert check_tar(out / "image.tar", baselines["ocidir-to-tar"].tar_sha or "")
        for digest in (small, big17):
            assert proxy.served(f"/blobs/{digest}") == 0
            assert not proxy.exchanges("GET", f"/blobs/{digest}")
    assert not kept_files(env)
