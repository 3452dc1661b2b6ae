"""Registry → tar://: layers are handled one at a time, and later layers download ahead.

A tar:// output takes one layer at a time (a layer that arrived early would be spooled,
decompressed, to disk). The downloads of later layers need not wait: the engine reads
them ahead into the resume cache, and their turn reads them from there. Seen through the
counting proxy: while layer 0's download is held mid-body, every later blob is served in
full and nothing is spooled. Afterwards each blob has been served exactly once (the turn
did not fetch it again), the tar is the judged baseline and the cache is empty. With
``-j 1`` nothing runs ahead, which shows the observation can fail.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.ocilayout import LayoutInfo
from lab.registry import Registry

from .harness import KillImage, isolated_env, occystrap_cmd, ok, run, sha256_file
from .netproxy import RegistryProxy, Rule
from .test_kill_rerun import TAG, check_tar, kept_files

HOLD = 4.0  # seconds layer 0's body is held after its first bytes


@pytest.fixture(scope="module")
def tar_sha(kill_layout: LayoutInfo, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same image written from its OCI layout: the registry copy must equal it."""
    work = tmp_path_factory.mktemp("read-ahead-baseline")
    out = work / "image.tar"
    cmd = occystrap_cmd("process", f"ocidir://{kill_layout.path}:latest", f"tar://{out}?tag={TAG}")
    ok(run(cmd, isolated_env(work)))
    return sha256_file(out)


def _run_held(
    kill_image: KillImage,
    registry: Registry,
    env: dict[str, str],
    out: Path,
    *extra: str,
    dest: str | None = None,
    filters: tuple[str, ...] = (),
    watch: Callable[[], None] | None = None,
) -> tuple[bool, bool, RegistryProxy, subprocess.CompletedProcess[bytes]]:
    """Run registry → ``dest`` (default: a tar in ``out``) with layer 0 held: (every later
    blob was served in full while layer 0 was still held, something was spooled to the
    temporary directory). ``watch`` is called at each look while both hold."""
    layers = kill_image.layout.layer_digests
    first = layers[0]
    later = {d: kill_image.blobs[d] for d in layers[1:]}
    with RegistryProxy(registry.host) as proxy:
        proxy.rules.append(
            Rule(
                match=lambda method, path, _h: method == "GET" and first in path,
                stall_response_after=64 << 10,
                stall_for=HOLD,
            )
        )
        cmd = occystrap_cmd(
            "--insecure",
            *extra,
            "process",
            f"registry://{proxy.host}/{kill_image.repo}:v1",
            dest or f"tar://{out / 'image.tar'}?tag={TAG}",
            *filters,
        )
        spool_dir = Path(env["OCCYSTRAP_TEMP_DIR"])
        spool_dir.mkdir(parents=True, exist_ok=True)
        ahead = spooled = False
        with subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as proc:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                held = proxy.served(f"/blobs/{first}") < kill_image.blobs[first]
                if held and all(proxy.served(f"/blobs/{d}") == n for d, n in later.items()):
                    ahead = True
                    if watch is not None:
                        watch()
                spooled = spooled or any(spool_dir.iterdir())
                time.sleep(0.02)
            stdout, stderr = proc.communicate(timeout=120)
            done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    return ahead, spooled, proxy, done


def assert_each_blob_fetched_once(proxy: RegistryProxy, kill_image: KillImage) -> None:
    for digest, size in kill_image.blobs.items():
        gets = proxy.exchanges("GET", f"/blobs/{digest}")
        assert len(gets) == 1, f"{digest} fetched {len(gets)} times"
        assert proxy.served(f"/blobs/{digest}") == size


@pytest.mark.parametrize("jobs", ["4", "1"])
def test_later_layers_download_while_the_first_is_held(
    jobs: str,
    kill_image: KillImage,
    tar_sha: str,
    registry_plain: Registry,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """With one job nothing runs ahead (so the observation can fail)."""
    out = tmp_path / "out"
    out.mkdir()
    ahead, spooled, proxy, done = _run_held(kill_image, registry_plain, env, out, "-j", jobs)
    ok(done)
    assert ahead == (jobs != "1"), f"-j {jobs}: read ahead {ahead}"
    assert not spooled, "a layer that arrived before its turn was spooled"
    assert_each_blob_fetched_once(proxy, kill_image)
    assert check_tar(out / "image.tar", tar_sha)
    assert not kept_files(env), "a successful run must clean the download cache"


@pytest.mark.parametrize("case", ["cache-dir-is-a-file", "no-resume"])
def test_without_a_resume_copy_nothing_is_read_ahead_or_fetched_twice(
    case: str,
    kill_image: KillImage,
    tar_sha: str,
    registry_plain: Registry,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Reading a layer ahead only pays when the resume cache keeps it for its turn: read
    ahead and thrown away, every later layer would be fetched twice. No copy is kept where
    the cache directory cannot be made (XDG_CACHE_HOME is a file: one warning), nor with
    ``--no-resume`` (the directory is not even made, and nothing is said)."""
    out = tmp_path / "out"
    out.mkdir()
    extra: tuple[str, ...] = ("-j", "4")
    if case == "no-resume":
        extra += ("--no-resume",)
    else:
        not_a_dir = tmp_path / "cache-is-a-file"
        not_a_dir.write_bytes(b"")
        env = {**env, "XDG_CACHE_HOME": str(not_a_dir)}
    ahead, spooled, proxy, done = _run_held(kill_image, registry_plain, env, out, *extra)
    ok(done)
    assert not ahead, "layers were read ahead with nowhere to keep them"
    assert not spooled
    assert_each_blob_fetched_once(proxy, kill_image)
    assert check_tar(out / "image.tar", tar_sha)
    warnings = [line for line in done.stderr.decode().splitlines() if "not kept" in line]
    if case == "no-resume":
        assert not warnings, done.stderr.decode()  # asked for
        assert not (Path(env["XDG_CACHE_HOME"]) / "occystrap" / "partial").exists()
    else:
        assert len(warnings) == 1 and "cache-is-a-file" in warnings[0], done.stderr.decode()


def test_resume_cache_is_made_by_default(
    kill_image: KillImage, registry_plain: Registry, env: dict[str, str], tmp_path: Path
) -> None:
    """The other side of the test above: without the flag the directory is there."""
    out = tmp_path / "out"
    out.mkdir()
    cmd = occystrap_cmd(
        "--insecure",
        "process",
        f"registry://{registry_plain.host}/{kill_image.repo}:v1",
        f"tar://{out / 'image.tar'}?tag={TAG}",
    )
    ok(run(cmd, env))
    assert (Path(env["XDG_CACHE_HOME"]) / "occystrap" / "partial").is_dir()
    assert not kept_files(env)


@pytest.mark.parametrize(
    ("dest", "filters", "dropped"),
    [
        ("dir", (), True),
        ("ocidir", (), True),
        ("tar", (), False),
        ("dir", ("-f", "normalize-timestamps"), False),
    ],
)
def test_resume_copy_goes_once_the_output_holds_the_layer(
    dest: str,
    filters: tuple[str, ...],
    dropped: bool,
    kill_image: KillImage,
    registry_plain: Registry,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """A directory or a layout keeps each layer as soon as it is written, and a rerun
    skips it, so the copy of its download kept for a rerun is removed then, not at the end
    of the job (its page cache is then reused by the layers still being written). Seen
    while layer 0 is held: the later layers are in the output and their copies are gone.
    A tar is written whole or not at all, and filters make new layers from the download:
    there the copies stay until the job succeeds."""
    out = tmp_path / "out"
    out.mkdir()
    uri = {
        "dir": f"dir://{out / 'dir'}",
        "ocidir": f"ocidir://{out / 'layout'}:latest",
        "tar": f"tar://{out / 'image.tar'}?tag={TAG}",
    }[dest]
    later = set(kill_image.layout.layer_digests[1:])
    seen: list[set[str]] = []  # the later layers kept in the cache, at each look
    ahead, _, _, done = _run_held(
        kill_image,
        registry_plain,
        env,
        out,
        "-j",
        "4",
        dest=uri,
        filters=filters,
        watch=lambda: seen.append(later & set(kept_files(env))),
    )
    ok(done)
    assert ahead and seen, "the later layers were not all fetched while layer 0 was held"
    if dropped:
        assert set() in seen, f"copies kept while the output held the layers: {seen[-1]}"
    else:
        assert seen[-1] == later, f"copies removed before the job ended: {later - seen[-1]}"
    assert not kept_files(env), "a successful run must clean the download cache"
