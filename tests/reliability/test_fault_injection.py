"""Faults injected between occystrap and a real registry, and a daemon that dies mid-stream.

What ``tests/transports/test_registry_faults.py`` already covers is not repeated here
(dropped blob connection + Range resume, 429 + Retry-After, 500/503 on blob GETs, 5xx on
PATCH/PUT/manifest PUT, cross-host redirect, wrong Docker-Content-Digest, corrupted blob,
SIGKILL mid-layer). This file adds: a registry that stalls longer than the client timeout
(before answering and mid-body) and recovers, one that never answers again (a bounded,
one-line failure), a registry flaky on every kind of request, a connection cut while an
upload body is still being sent (monolithic PUT and chunked PATCH), a registry that dies
mid-push or mid-pull for good, and a fake Engine API that dies mid-export or mid-load.
"""

from __future__ import annotations

import hashlib
import json
import math
import tarfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from lab import images
from lab.ocilayout import LayoutInfo
from lab.registry import Registry
from lab.tools import skopeo
from occystrap import api
from occystrap.errors import TransportError
from occystrap.transports.base import RegistrySettings, RunContext

from .fake_engine import FakeEngine
from .harness import (
    KillImage,
    has_blob,
    has_tag,
    index_refs,
    occystrap_cmd,
    ok,
    one_line_error,
    record,
    run,
)
from .netproxy import RegistryProxy, Rule, any_request, blob_get, manifest_get

MiB = 1 << 20


@pytest.fixture
def proxy(registry_plain: Registry) -> Iterator[RegistryProxy]:
    with RegistryProxy(registry_plain.host) as p:
        yield p


@pytest.fixture
def isolated(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The isolated environment, also applied to this process (library calls)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def library_ctx(tmp_path: Path, timeout: float, retries: int) -> RunContext:
    """A run context with a short client timeout (the CLI has no flag for it: 60 s)."""
    return RunContext(
        registry=RegistrySettings(
            insecure_hosts=("*",),
            timeout=timeout,
            retries=retries,
            partial_dir=str(tmp_path / "partial"),
        )
    )


def big(kill_image: KillImage, i: int) -> tuple[str, int]:
    """(digest, size) of layer ``i`` of the kill image (1: 17 MiB, 2: 34 MiB)."""
    layout = kill_image.layout
    return layout.layer_digests[i], layout.layer_sizes[i]


def judge_layout(out: Path, manifest_digest: str, tmp_path: Path) -> None:
    assert index_refs(out) == {"v1": manifest_digest}
    skopeo("copy", f"oci:{out}:v1", f"oci:{tmp_path / 'judge'}:x")


# -- stalls --------------------------------------------------------------------------------------


def test_stalled_answer_is_timed_out_and_retried(
    proxy: RegistryProxy, kill_image: KillImage, isolated: dict[str, str], tmp_path: Path
) -> None:
    """The manifest GET is held 3 s; with a 1 s client timeout it is retried and succeeds."""
    proxy.rules.append(Rule(manifest_get, delay=3.0))
    out = tmp_path / "out"
    started = time.monotonic()
    api.process(
        f"registry://{proxy.host}/{kill_image.repo}:v1",
        f"ocidir://{out}:v1",
        ctx=library_ctx(tmp_path, timeout=1.0, retries=3),
    )
    elapsed = time.monotonic() - started
    assert len(proxy.exchanges("GET", "/manifests/")) == 2
    judge_layout(out, kill_image.manifest_digest, tmp_path)
    record(
        "fault",
        fault="manifest GET held 3 s (timeout 1 s)",
        outcome="retried, correct",
        seconds=round(elapsed, 1),
    )


def test_stall_mid_blob_resumes_at_the_byte_received(
    proxy: RegistryProxy, kill_image: KillImage, isolated: dict[str, str], tmp_path: Path
) -> None:
    """The 17 MiB blob stops after 2 MiB for 3 s; the client times out and asks for the rest."""
    digest, size = big(kill_image, 1)
    proxy.rules.append(Rule(blob_get(digest), stall_response_after=2 * MiB, stall_for=3.0))
    out = tmp_path / "out"
    api.process(
        f"registry://{proxy.host}/{kill_image.repo}:v1",
        f"ocidir://{out}:v1",
        ctx=library_ctx(tmp_path, timeout=1.0, retries=3),
    )
    gets = proxy.exchanges("GET", f"/blobs/{digest}")
    assert [g.headers.get("range") for g in gets] == [None, f"bytes={2 * MiB}-"]
    assert gets[1].served == size - 2 * MiB
    judge_layout(out, kill_image.manifest_digest, tmp_path)
    record(
        "fault",
        fault="blob body stalls 3 s after 2 MiB (timeout 1 s)",
        outcome="resumed with Range at 2 MiB, correct",
    )


@pytest.mark.parametrize("what", ["every request", "blob GETs"])
def test_registry_that_never_answers_fails_in_bounded_time(
    what: str,
    proxy: RegistryProxy,
    kill_image: KillImage,
    isolated: dict[str, str],
    tmp_path: Path,
) -> None:
    proxy.rules.append(
        Rule(any_request if what == "every request" else blob_get(), times=None, delay=math.inf)
    )
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        api.process(
            f"registry://{proxy.host}/{kill_image.repo}:v1",
            f"ocidir://{out}:v1",
            ctx=library_ctx(tmp_path, timeout=1.0, retries=2),
        )
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert "\n" not in message and proxy.host in message, message
    assert "Timeout" in message or "timed out" in message, message
    # 3 attempts of 1 s plus backoff (0.5 s, 1 s); blob GETs may run in parallel
    assert elapsed < 10, elapsed
    assert index_refs(out) == {}
    record(
        "fault",
        fault=f"{what} stalled forever (timeout 1 s, --retries 2)",
        outcome=message,
        seconds=round(elapsed, 1),
    )


# -- 5xx on every kind of request ------------------------------------------------------------


def _is(method: str, part: str, exact: bool = False) -> Rule:
    def match(m: str, path: str, headers: Mapping[str, str]) -> bool:
        return m == method and (path == part if exact else part in path)

    return Rule(match)


def test_flaky_registry_every_request_kind_fails_once(
    proxy: RegistryProxy,
    registry_plain: Registry,
    busybox_layout: LayoutInfo,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Push then pull; the first request of each kind gets a 5xx (or 429/408): all retried."""
    faults = [
        (_is("GET", "/v2/", exact=True), 503, {}),
        (_is("HEAD", "/blobs/"), 503, {}),
        (_is("POST", "/blobs/uploads/"), 502, {}),
        (_is("PUT", "/blobs/uploads/"), 504, {}),
        (_is("PUT", "/manifests/"), 500, {}),
        (_is("GET", "/manifests/"), 429, {"Retry-After": "1"}),
        (_is("GET", "/blobs/sha256:"), 408, {}),
    ]
    for rule, status, headers in faults:
        rule.status, rule.headers = status, headers
        proxy.rules.append(rule)
    target = f"registry://{proxy.host}/reliability/flaky:v1"
    ok(
        run(
            occystrap_cmd(
                "--insecure", "process", f"ocidir://{busybox_layout.path}:latest", target
            ),
            env,
        )
    )
    ok(run(occystrap_cmd("--insecure", "process", target, f"ocidir://{tmp_path / 'out'}:v1"), env))
    assert [r.hits for r in proxy.rules] == [1] * len(faults)
    judge_layout(tmp_path / "out", busybox_layout.manifest_digest, tmp_path)
    record(
        "fault",
        fault="first ping/HEAD/POST/PUT/manifest PUT/manifest GET/blob GET answered 503/503/502/504/500/429/408",
        outcome="all retried; push and pull correct",
    )


# -- the connection cut while an upload is being sent ----------------------------------------


def _big_upload(method: str, content_range: str | None = None) -> Rule:
    """A PUT/PATCH carrying more than 16 MiB (or exactly the given ``Content-Range``)."""

    def match(m: str, path: str, headers: Mapping[str, str]) -> bool:
        if m != method or "/blobs/uploads/" not in path:
            return False
        if content_range is not None:
            return headers.get("content-range") == content_range
        return int(headers.get("content-length") or 0) >= 16 * MiB

    return Rule(match)


def test_monolithic_put_cut_mid_body_restarts_that_upload(
    proxy: RegistryProxy,
    registry_plain: Registry,
    kill_layout: LayoutInfo,
    kill_archive: Path,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """From a docker-archive the layers are compressed on the fly and spooled, so the 17 MiB
    one goes up as one PUT; the connection is cut after 5 MiB of it."""
    rule = _big_upload("PUT")
    rule.cut_request_after = 5 * MiB
    proxy.rules.append(rule)
    repo = "reliability/cut-put"
    source = f"tar://{kill_archive}"
    ok(
        run(
            occystrap_cmd("--insecure", "process", source, f"registry://{proxy.host}/{repo}:v1"),
            env,
        )
    )
    puts = [e for e in proxy.exchanges("PUT", "/blobs/uploads/") if e.path == _cut_path(proxy)]
    assert rule.hits == 1 and len(puts) == 1 and puts[0].sent_up == 5 * MiB
    digest = puts[0].path.split("digest=")[1]
    again = [
        e
        for e in proxy.exchanges("PUT", "/blobs/uploads/")
        if e.path.endswith(digest) and not e.cut
    ]
    assert len(again) == 1 and again[0].sent_up == int(again[0].headers["content-length"])
    assert len(proxy.exchanges("DELETE", "/blobs/uploads/")) == 1  # the broken session is cancelled
    _judge_pushed(registry_plain, repo, None, tmp_path, kill_layout.diff_ids)
    record(
        "fault",
        fault="monolithic PUT (17 MiB layer compressed on the fly) cut after 5 MiB",
        outcome="session cancelled (DELETE), the blob uploaded once more in full from the spool file, correct",
    )


def _cut_path(proxy: RegistryProxy) -> str:
    return next(e.path for e in proxy.log if e.cut)


@pytest.fixture(scope="module")
def kill_archive_gzip_layers(
    kill_layout: LayoutInfo, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The kill image as a docker-archive whose layer.tar members are the gzip blobs."""
    out = tmp_path_factory.mktemp("gzip-archive") / "kill-gz.docker.tar"
    return images.docker_save_legacy(kill_layout, out, ["lab/kill:v1"], gzip_layers=True)


@pytest.mark.parametrize("source", ["tar", "ocidir", "stdin"])
def test_chunked_patch_cut_mid_body(
    source: str,
    proxy: RegistryProxy,
    registry_plain: Registry,
    kill_image: KillImage,
    kill_archive: Path,
    kill_archive_gzip_layers: Path,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """The second 16 MiB PATCH of the 34 MiB layer is cut after 4 MiB.

    distribution 2.8 then refuses the session (its ``_state`` offset no longer matches what
    it stored: GET/DELETE answer 404 BLOB_UPLOAD_INVALID), so the blob must start over in a
    new session, from bytes read again: a spool file (docker-archive, compressed on the fly),
    the layout's blob (ocidir), or nothing (a docker-archive on stdin is read once). Either
    the push succeeds and is correct, or it fails with one line naming the blob, nothing is
    tagged, and a rerun uploads only what the registry does not hold yet.
    """
    rule = _big_upload("PATCH", content_range=f"{16 * MiB}-{32 * MiB - 1}")
    rule.cut_request_after = 4 * MiB
    proxy.rules.append(rule)
    repo = f"reliability/cut-patch-{source}"
    label = {
        "tar": "a docker-archive file (compressed on the fly, spooled)",
        "ocidir": "an OCI layout (blob re-opened)",
        "stdin": "a docker-archive on stdin with gzip layers (read once)",
    }[source]
    src, stdin = {
        "tar": (f"tar://{kill_archive}", None),
        "ocidir": (f"ocidir://{kill_image.layout.path}:latest", None),
        "stdin": ("tar://-", kill_archive_gzip_layers),
    }[source]
    cmd = occystrap_cmd("--insecure", "process", src, f"registry://{proxy.host}/{repo}:v1")
    done = run(cmd, env, stdin=stdin)
    assert rule.hits == 1
    cut_at = next(i for i, e in enumerate(proxy.log) if e.cut)
    later = proxy.log[cut_at + 1 :]
    status = [e for e in later if e.method == "GET" and "/blobs/uploads/" in e.path]
    assert status and status[0].status == 404, "the client did not ask where to continue"
    if done.returncode == 0:
        sessions = len(proxy.exchanges("POST", "/blobs/uploads/"))
        assert sessions == len(kill_image.blobs) + 1  # one new session for the cut blob
        _judge_pushed(registry_plain, repo, None, tmp_path, kill_image.layout.diff_ids)
        outcome = (
            "session refused by the registry (404); upload restarted in a new session; correct"
        )
    else:
        line = one_line_error(done)
        assert "upload session" in line and "@sha256:" in line, line
        assert not has_tag(registry_plain, repo, "v1")
        present = {d for d in kill_image.blobs if has_blob(registry_plain, repo, d)}
        proxy.reset()
        ok(run(cmd, env, stdin=stdin))
        missing = len(proxy.exchanges("POST", "/blobs/uploads/"))
        assert missing <= len(kill_image.blobs) - len(present)
        _judge_pushed(registry_plain, repo, None, tmp_path, kill_image.layout.diff_ids)
        outcome = f"{line} -- rerun uploaded only the {missing} missing blobs; correct"
    record(
        "fault",
        fault=f"chunked PATCH (34 MiB layer from {label}) cut after 4 MiB of its 2nd chunk",
        outcome=outcome,
    )


def _judge_pushed(
    reg: Registry,
    repo: str,
    manifest_digest: str | None,
    tmp_path: Path,
    diff_ids: list[str] | None = None,
) -> None:
    raw = skopeo("inspect", "--raw", *reg.skopeo_args("plain"), reg.ref(repo, "v1")).stdout
    if manifest_digest is not None:
        assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == manifest_digest
    if diff_ids is not None:
        config = skopeo(
            "inspect", "--config", *reg.skopeo_args("plain"), reg.ref(repo, "v1")
        ).stdout
        assert json.loads(config)["rootfs"]["diff_ids"] == diff_ids
    skopeo("copy", *reg.skopeo_args("src"), reg.ref(repo, "v1"), f"oci:{tmp_path / 'judge'}:x")


# -- a registry that dies for good -----------------------------------------------------------


def test_registry_dies_mid_push(
    proxy: RegistryProxy,
    registry_plain: Registry,
    kill_image: KillImage,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    rule = _big_upload("PATCH")
    rule.cut_request_after, rule.then_dead = 6 * MiB, True
    proxy.rules.append(rule)
    repo = "reliability/dies-mid-push"
    started = time.monotonic()
    done = run(
        occystrap_cmd(
            "--insecure",
            "--retries",
            "2",
            "process",
            f"ocidir://{kill_image.layout.path}:latest",
            f"registry://{proxy.host}/{repo}:v1",
        ),
        env,
    )
    elapsed = time.monotonic() - started
    line = one_line_error(done)
    assert proxy.host in line, line
    assert elapsed < 30, elapsed
    assert not has_tag(registry_plain, repo, "v1")
    record(
        "fault",
        fault="registry gone after 6 MiB of a PATCH (--retries 2)",
        outcome=line,
        seconds=round(elapsed, 1),
    )


@pytest.mark.parametrize("dest", ["tar", "ocidir"])
def test_registry_dies_mid_pull(
    dest: str,
    proxy: RegistryProxy,
    kill_image: KillImage,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    digest, _ = big(kill_image, 2)
    proxy.rules.append(Rule(blob_get(digest), cut_response_after=4 * MiB, then_dead=True))
    out = tmp_path / "out"
    uri = f"tar://{out}.tar" if dest == "tar" else f"ocidir://{out}:v1"
    started = time.monotonic()
    done = run(
        occystrap_cmd(
            "--insecure",
            "--retries",
            "2",
            "process",
            f"registry://{proxy.host}/{kill_image.repo}:v1",
            uri,
        ),
        env,
    )
    elapsed = time.monotonic() - started
    line = one_line_error(done)
    assert proxy.host in line and elapsed < 30, (line, elapsed)
    assert not Path(f"{out}.tar").exists() and index_refs(out) == {}
    assert not list(tmp_path.glob("out.tar.tmp-*"))
    record(
        "fault",
        fault=f"registry gone after 4 MiB of a blob GET (-> {dest}, --retries 2)",
        outcome=line,
        seconds=round(elapsed, 1),
    )


# -- a daemon that dies mid-stream -----------------------------------------------------------


def _inspect_for(archive: Path, layout: LayoutInfo, tag: str) -> dict[str, object]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        config = json.load(member)[0]["Config"]
    return {
        "Id": "sha256:" + Path(config).name.removesuffix(".json").removeprefix("sha256:"),
        "RepoTags": [tag],
        "RootFS": {"Type": "layers", "Layers": layout.diff_ids},
    }


def _mid_layer(archive: Path) -> int:
    """The archive offset in the middle of its largest layer's bytes."""
    with tarfile.open(archive) as tar:
        layer = max(
            (m for m in tar.getmembers() if m.name.endswith(".tar") or "/sha256/" in m.name),
            key=lambda m: m.size,
        )
    return layer.offset_data + layer.size // 2


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("dest", ["tar", "ocidir", "dir"])
def test_daemon_dies_mid_export(
    dest: str,
    chunked: bool,
    edge_archive: Path,
    edge_layout: LayoutInfo,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    cut = _mid_layer(edge_archive)
    inspect = _inspect_for(edge_archive, edge_layout, "lab/edge:latest")
    out = tmp_path / "out"
    uri = {"tar": f"tar://{out}.tar", "ocidir": f"ocidir://{out}:v1", "dir": f"dir://{out}"}[dest]
    with FakeEngine(
        tmp_path / "engine.sock",
        edge_archive,
        inspect,
        export_cut_after=cut,
        export_chunked=chunked,
    ) as engine:
        done = run(
            occystrap_cmd("process", f"docker://lab/edge:latest?socket={engine.path}", uri), env
        )
    line = one_line_error(done)
    assert "daemon" in line or "broke off" in line or "truncated" in line, line
    assert not Path(f"{out}.tar").exists() and index_refs(out) == {}
    assert not (out / "manifest.json").exists() and not (out / "catalog.json").exists()
    record(
        "fault",
        fault=f"daemon export cut in the middle of its largest layer ({'chunked' if chunked else 'Content-Length'}) -> {dest}",
        outcome=line,
    )


@pytest.mark.parametrize("cut", [64 << 10, None], ids=["mid-upload", "after-upload"])
def test_daemon_drops_the_load_connection(
    cut: int | None, edge_layout: LayoutInfo, env: dict[str, str], tmp_path: Path
) -> None:
    with FakeEngine(tmp_path / "engine.sock", load_cut_after=cut) as engine:
        done = run(
            occystrap_cmd(
                "process",
                f"ocidir://{edge_layout.path}:latest",
                f"docker://lab/edge:v1?socket={engine.path}",
            ),
            env,
        )
        received, complete = engine.received, engine.complete
    line = one_line_error(done)
    assert "daemon" in line, line
    if cut is not None:
        assert received <= cut and not complete
    else:
        assert complete
    record(
        "fault",
        fault=f"daemon drops the load connection ({'after 64 KiB' if cut else 'after the whole upload, no answer'})",
        outcome=line,
    )
