"""The persistent layer cache (``--cache-dir``), judged by what crosses the wire.

The source is a real registry (``registry_plain``) behind a small counting proxy on
loopback, so a test can say exactly which blobs a run fetched. A rerun of the same pipeline
must fetch no layer and compress none (the compressor is counted too); a changed filter
option or compression must miss; concurrent runs sharing one cache must all succeed and
leave it consistent; eviction must keep the size bound in least-recently-used order.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from lab.images import big_layer_file
from lab.ocilayout import LayoutInfo, build_oci_layout
from lab.registry import Registry
from lab.tarspec import TarSpec, directory, file
from lab.tools import skopeo
from occystrap.api import process
from occystrap.blobio import compress as compress_module
from occystrap.blobio.readers import drain
from occystrap.blobio.verify import HashingReader
from occystrap.cache import CacheKey, LayerCache, parse_size
from occystrap.copy import CopyResult
from occystrap.model.digest import Digest
from occystrap.transports.base import RegistrySettings, RunContext

# -- a counting proxy in front of the registry ---------------------------------------------------

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class CountingProxy:
    """Forwards to ``upstream`` (``HOST:PORT``), recording (method, path, status); the first
    ``fail[path-substring]`` matching requests are answered 503 instead."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.seen: list[tuple[str, str, int]] = []
        self.fail: dict[str, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                with proxy.lock:
                    hit = next((k for k, n in proxy.fail.items() if n > 0 and k in self.path), None)
                    if hit is not None:
                        proxy.fail[hit] -= 1
                if hit is not None:
                    proxy.record(self.command, self.path, 503)
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    proxy.record(self.command, self.path, resp.status)
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    data = resp.read()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def record(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self.seen.append((method, path, status))

    def blob_gets(self, digests: list[str]) -> list[str]:
        """The layer digests (of ``digests``) whose blobs were fetched since the last reset."""
        with self.lock:
            return [
                p.rsplit("/", 1)[1]
                for m, p, s in self.seen
                if m == "GET" and "/blobs/" in p and p.rsplit("/", 1)[1] in digests
            ]

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> LayoutInfo:
    """Four layers (one of 6 MB incompressible data), mtimes not 0 so normalizing changes them."""
    root = tmp_path_factory.mktemp("cache-image")
    big = big_layer_file(root / "big.tar", 6 << 20, seed=3, files=2)
    layers: list[list[TarSpec] | Path] = [
        [directory("etc"), file("etc/os-release", "ID=lab\n")],
        big.path,
        [directory("srv"), file("srv/a", b"a" * 3000), file("srv/b", b"b" * 70000)],
        [directory("opt"), file("opt/tool", b"#!/bin/sh\necho hi\n", mode=0o755)],
    ]
    return build_oci_layout(root / "layout", layers)


@pytest.fixture(scope="module")
def pushed(registry_plain: Registry, layout: LayoutInfo) -> str:
    repo = f"cache/app-{uuid.uuid4().hex[:8]}"
    skopeo("copy", *registry_plain.skopeo_args("dest"), layout.ref, registry_plain.ref(repo, "v1"))
    return repo


@pytest.fixture
def proxy(registry_plain: Registry) -> Iterator[CountingProxy]:
    p = CountingProxy(registry_plain.host)
    try:
        yield p
    finally:
        p.close()


def occystrap(
    *args: str | Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "occystrap", *(os.fspath(a) for a in args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[bytes]) -> str:
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stderr.decode()


def summary(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            h.update(data)
    return h.hexdigest()


def assert_consistent(cache_dir: Path) -> list[dict[str, Any]]:
    """Every entry parses and names a blob of the right size and digest; nothing half-written."""
    done = occystrap("--cache-dir", cache_dir, "cache", "ls", "--json")
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    for e in listing["entries"]:
        if e["blob"] is None:
            continue
        blob = cache_dir / "blobs" / "sha256" / e["blob"].split(":")[1]
        assert blob.stat().st_size == e["size"]
        assert sha256_file(blob) == e["blob"].split(":")[1]
    named = {e["blob"].split(":")[1] for e in listing["entries"] if e["blob"]}
    assert {p.name for p in (cache_dir / "blobs" / "sha256").iterdir()} <= named
    assert not [p for p in (cache_dir / "tmp").iterdir()], "leftover temporary files"
    entries: list[dict[str, Any]] = listing["entries"]
    return entries


# -- reruns -----------------------------------------------------------------------------------------


def test_rerun_fetches_no_layer(
    proxy: CountingProxy, pushed: str, layout: LayoutInfo, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    src = f"registry://{proxy.host}/{pushed}:v1"
    args: list[str | Path] = ["--insecure", "--cache-dir", cache, "process", src]
    first = ok(occystrap(*args, f"tar://{tmp_path / 'one.tar'}", "-f", "normalize-timestamps"))
    assert sorted(proxy.blob_gets(layout.layer_digests)) == sorted(layout.layer_digests)
    assert "from cache" not in summary(first)
    proxy.reset()
    second = ok(occystrap(*args, f"tar://{tmp_path / 'two.tar'}", "-f", "normalize-timestamps"))
    assert proxy.blob_gets(layout.layer_digests) == []  # not one layer fetched
    assert [m for m, p, s in proxy.seen if "/manifests/" in p]  # the source was asked, though
    assert "(0 already present, 4 from cache), read 0 B" in summary(second), second
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    entries = assert_consistent(cache)
    assert len(entries) == 4 and {e["source"] for e in entries} == set(layout.layer_digests)
    assert {e["form"] for e in entries} == {"uncompressed"}
    # a changed filter option misses, and the old entries stay for the old option
    proxy.reset()
    ts1 = ok(occystrap(*args, f"tar://{tmp_path / 'ts1.tar'}", "-f", "normalize-timestamps:ts=1"))
    assert sorted(proxy.blob_gets(layout.layer_digests)) == sorted(layout.layer_digests)
    assert "from cache" not in summary(ts1)
    assert (tmp_path / "ts1.tar").read_bytes() != (tmp_path / "one.tar").read_bytes()
    proxy.reset()
    ok(occystrap(*args, f"tar://{tmp_path / 'three.tar'}", "-f", "normalize-timestamps:ts=0"))
    assert proxy.blob_gets(layout.layer_digests) == []  # ts=0 is the default: same key
    assert len(assert_consistent(cache)) == 8


class CountingCompressors:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = compress_module.make_compressor

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(compress_module, "make_compressor", counted)


def test_rerun_compresses_no_layer(
    proxy: CountingProxy,
    pushed: str,
    layout: LayoutInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compressors = CountingCompressors(monkeypatch)
    cache = LayerCache(tmp_path / "cache")
    src = f"registry://{proxy.host}/{pushed}:v1"
    registry = RegistrySettings(insecure_hosts=("*",))

    def run(
        dest: str, filters: list[str], compression: str = "gzip"
    ) -> tuple[CopyResult, RunContext]:
        ctx = RunContext(registry=registry, layer_cache=cache, compression=compression)
        result = process(src, dest, filters, ctx)
        assert isinstance(result, CopyResult)
        return result, ctx

    first, _ = run(f"ocidir://{tmp_path / 'a'}:v1", ["normalize-timestamps"])
    assert [w.outcome for w in first.layers] == ["rewritten"] * 4
    assert compressors.calls >= 4  # the counter sees the engine compress
    compressors.calls = 0
    proxy.reset()
    again, ctx = run(f"ocidir://{tmp_path / 'b'}:v1", ["normalize-timestamps"])
    assert [w.outcome for w in again.layers] == ["cached"] * 4
    assert compressors.calls == 0 and proxy.blob_gets(layout.layer_digests) == []
    assert (ctx.stats.cache_hits, ctx.stats.bytes_read) == (4, 0)
    assert again.manifest.raw == first.manifest.raw  # the same image, digest for digest
    # into the layout that already has the blobs: skipped without reading the cache blob
    held, ctx = run(f"ocidir://{tmp_path / 'a'}:v2", ["normalize-timestamps"])
    assert [w.outcome for w in held.layers] == ["skipped"] * 4 and ctx.stats.cache_hits == 4
    # another compression is another output: a miss
    proxy.reset()
    zstd, _ = run(f"ocidir://{tmp_path / 'z'}:v1", ["normalize-timestamps"], compression="zstd")
    assert [w.outcome for w in zstd.layers] == ["rewritten"] * 4 and compressors.calls >= 4
    assert sorted(proxy.blob_gets(layout.layer_digests)) == sorted(layout.layer_digests)


def test_convert_route_is_cached_too(layout: LayoutInfo, tmp_path: Path) -> None:
    """No filter: ocidir -> dir:// decompresses every layer; the rerun reads no source byte."""
    cache = LayerCache(tmp_path / "cache")
    src = f"ocidir://{layout.path}:latest"
    outs = []
    for name in ("d1", "d2"):
        ctx = RunContext(layer_cache=cache)
        result = process(src, f"dir://{tmp_path / name}", [], ctx)
        assert isinstance(result, CopyResult)
        outs.append(([w.outcome for w in result.layers], ctx.stats.bytes_read))
    assert outs[0] == (["converted"] * 4, sum(layout.layer_sizes))
    assert outs[1] == (["cached"] * 4, 0)


def test_observing_filters_bypass_the_cache(layout: LayoutInfo, tmp_path: Path) -> None:
    """search must see every entry, so a chain with it is never replayed from the cache."""
    cache = LayerCache(tmp_path / "cache")
    src = f"ocidir://{layout.path}:latest"
    for i in range(2):
        ctx = RunContext(layer_cache=cache)
        result = process(
            src,
            f"tar://{tmp_path / f'{i}.tar'}",
            ["normalize-timestamps", "search:pattern=tool"],
            ctx,
        )
        assert isinstance(result, CopyResult)
        assert [w.outcome for w in result.layers] == ["rewritten"] * 4
    assert cache.entries() == []


def test_damaged_cache_blob_fails_once_then_heals(layout: LayoutInfo, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    src = f"ocidir://{layout.path}:latest"
    args: list[str | Path] = ["--cache-dir", cache_dir, "process", src]
    ok(occystrap(*args, f"tar://{tmp_path / 'a.tar'}", "-f", "normalize-timestamps"))
    blobs = sorted((cache_dir / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    victim = blobs[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = occystrap(*args, f"tar://{tmp_path / 'b.tar'}", "-f", "normalize-timestamps")
    lines = bad.stderr.decode().strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 1 and "layer cache entry" in lines[0], lines
    assert not (tmp_path / "b.tar").exists()
    ok(occystrap(*args, f"tar://{tmp_path / 'c.tar'}", "-f", "normalize-timestamps"))
    assert (tmp_path / "c.tar").read_bytes() == (tmp_path / "a.tar").read_bytes()
    assert_consistent(cache_dir)


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_runs_share_one_cache(layout: LayoutInfo, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    src = f"ocidir://{layout.path}:latest"
    jobs = []
    for i in range(6):  # two pipelines, three processes each, all at once
        ts = i % 2
        cmd = [sys.executable, "-m", "occystrap", "-q", "--cache-dir", str(cache_dir), "process",
               src, f"ocidir://{tmp_path / f'out{i}'}:v1", "-f", f"normalize-timestamps:ts={ts}"]  # fmt: skip
        jobs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in jobs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    index = {i: json.loads((tmp_path / f"out{i}" / "index.json").read_bytes()) for i in range(6)}
    digests = {i: doc["manifests"][0]["digest"] for i, doc in index.items()}
    assert digests[0] == digests[2] == digests[4] != digests[1] == digests[3] == digests[5]
    entries = assert_consistent(cache_dir)
    assert len(entries) == 8  # 4 layers x 2 pipelines, each entry once
    rerun = ok(occystrap("--cache-dir", cache_dir, "process", src, f"ocidir://{tmp_path / 'again'}:v1", "-f", "normalize-timestamps"))  # fmt: skip
    assert "4 from cache" in summary(rerun)


def test_concurrent_threads_and_eviction_keep_the_cache_consistent(tmp_path: Path) -> None:
    """Writers, readers and evictors in threads of one process (flock per descriptor)."""
    cache = LayerCache(tmp_path / "cache", max_size=60_000)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(30):
                n = (seed * 7 + i) % 12
                data = bytes([n]) * (4000 + n)
                key = key_for(f"src-{n}")
                hit = cache.lookup(key)
                if hit is not None:
                    with hit:
                        assert hit.blob is not None and hit.blob.read() == data
                    continue
                put(cache, key, data)
                if i % 10 == 9:
                    cache.prune()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert cache.usage() <= 60_000
    for e in cache.entries():
        assert e.blob is not None
        blob = tmp_path / "cache" / "blobs" / "sha256" / e.blob.encoded
        assert blob.stat().st_size == e.size and sha256_file(blob) == e.blob.encoded
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


# -- eviction -------------------------------------------------------------------------------------


def key_for(name: str) -> CacheKey:
    return CacheKey.build(Digest.of_bytes(name.encode()), "digest", [], "uncompressed", None, None)


def put(cache: LayerCache, key: CacheKey, data: bytes) -> None:
    """Record ``data`` as the output for ``key`` the way the engine does."""
    with cache.record(key) as rec:
        drain(rec.watch_stored(io.BytesIO(b"source bytes")))
        out = HashingReader(io.BytesIO(data))
        drain(rec.tee(out))
        rec.done(diff_id=out.digest(), compression="none", unchanged=False, outcome="rewritten",
                 expect=out.digest())  # fmt: skip


def test_lru_eviction_keeps_the_size_bound(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache", max_size=parse_size("1GB"))
    names = [f"layer-{i}" for i in range(6)]
    for i, name in enumerate(names):
        put(cache, key_for(name), bytes([i]) * 10_000)
        os.utime(cache.entry_path(key_for(name).id), (1_000_000 + i, 1_000_000 + i))
    assert [e.key["source"] for e in cache.entries()] == [
        str(key_for(n).source) for n in reversed(names)
    ]
    hit = cache.lookup(key_for("layer-0"))  # the oldest is used again: now the newest
    assert hit is not None
    hit.close()
    entry_bytes = os.path.getsize(cache.entry_path(key_for("layer-0").id))
    bound = 3 * (10_000 + entry_bytes) + 100  # room for three entries
    result = cache.prune(max_size=bound)
    kept = {e.key["source"] for e in cache.entries()}
    assert kept == {str(key_for(n).source) for n in ("layer-0", "layer-4", "layer-5")}
    assert result.removed_entries == 3 and result.kept_entries == 3
    assert cache.usage() <= bound and result.kept_bytes == cache.usage()
    assert len(list((tmp_path / "cache" / "blobs" / "sha256").iterdir())) == 3  # blobs went too

    # the bound is enforced on insert: the least recently used entry makes room
    small = LayerCache(tmp_path / "cache", max_size=bound)
    put(small, key_for("layer-new"), b"n" * 10_000)
    kept = {e.key["source"] for e in small.entries()}
    assert kept == {str(key_for(n).source) for n in ("layer-0", "layer-5", "layer-new")}
    assert small.usage() <= bound

    # a layer bigger than the whole cache is not cached (and evicts nothing)
    put(small, key_for("huge"), b"h" * (bound + 1))
    assert len(small.entries()) == 3 and small.lookup(key_for("huge")) is None


def test_cache_ls_and_prune_commands(layout: LayoutInfo, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    src = f"ocidir://{layout.path}:latest"
    ok(occystrap("--cache-dir", cache_dir, "process", src, f"tar://{tmp_path / 'a.tar'}", "-f", "normalize-timestamps"))  # fmt: skip
    time.sleep(0.05)
    env = {"OCCYSTRAP_CACHE_DIR": str(cache_dir)}  # the environment variable works as well
    ok(
        occystrap(
            "process", src, f"tar://{tmp_path / 'b.tar'}", "-f", "exclude:pattern=srv", env=env
        )
    )
    listing = json.loads(occystrap("cache", "ls", "--json", env=env).stdout)
    assert len(listing["entries"]) == 8 and listing["size"] > sum(layout.layer_sizes)
    assert listing["entries"][0]["filters"][0]["name"] == "exclude"  # most recent first
    table = occystrap("cache", "ls", env=env).stdout.decode().splitlines()
    assert table[0].split()[:3] == ["LAST", "USED", "SIZE"] and len(table) == 10
    assert re.fullmatch(r"8 entries, .+ of 10\.0 GB in .+", table[-1])
    # prune to a bound that holds exactly the newest pipeline's outputs: their blobs and
    # their entry files (the prune counts both)
    entry_files = sum(
        (cache_dir / "entries" / f"{e['id']}.json").stat().st_size for e in listing["entries"][:4]
    )
    newest = sum(e["size"] for e in listing["entries"][:4]) + entry_files
    pruned = occystrap("--cache-dir", cache_dir, "cache", "prune", "--max-size", str(newest))
    assert pruned.returncode == 0 and pruned.stdout.startswith(b"removed 4 entries"), pruned
    left = json.loads(occystrap("cache", "ls", "--json", env=env).stdout)["entries"]
    assert [e["id"] for e in left] == [e["id"] for e in listing["entries"][:4]]
    gone = occystrap("--cache-dir", cache_dir, "cache", "prune", "--all")
    assert gone.stdout.startswith(b"removed 4 entries") and gone.stdout.rstrip().endswith(
        b"0 left (0 B)"
    )
    assert list((cache_dir / "blobs" / "sha256").iterdir()) == []
    missing = occystrap("cache", "ls")
    assert missing.returncode == 2 and b"--cache-dir" in missing.stderr
    bad = occystrap("--cache-dir", cache_dir, "--cache-max-size", "lots", "cache", "ls")
    assert bad.returncode == 2 and len(bad.stderr.decode().strip().splitlines()) == 1


def test_prune_removes_what_killed_writers_left(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    stale = tmp_path / "cache" / "tmp" / "blob-stale"
    stale.write_bytes(b"half a layer")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    live = cache.begin(key_for("live"))  # a writer still at work holds its file's lock
    assert live is not None and live.tmp is not None
    os.utime(live.tmp, (time.time() - 3600, time.time() - 3600))
    orphan = tmp_path / "cache" / "blobs" / "sha256" / ("0" * 64)
    orphan.write_bytes(b"no entry names me")
    cache.prune()
    assert not stale.exists() and not orphan.exists() and os.path.exists(live.tmp)
    live.discard()


# -- the summary line's retries come from the registry client --------------------------------------


def test_summary_counts_registry_retries(
    proxy: CountingProxy, pushed: str, layout: LayoutInfo, tmp_path: Path
) -> None:
    big = max(layout.layer_digests, key=lambda d: layout.layer_sizes[layout.layer_digests.index(d)])
    proxy.fail[f"/blobs/{big}"] = 2  # two 503s before the blob is served
    src = f"registry://{proxy.host}/{pushed}:v1"
    err = ok(occystrap("--insecure", "process", src, f"tar://{tmp_path / 'r.tar'}"))
    line = summary(err)
    assert ", 2 retries," in line, line
    assert f"read {fmt(sum(layout.layer_sizes))}," in line, line  # compressed layer bytes, once


def fmt(n: int) -> str:
    from occystrap.cache import format_size

    return format_size(n)
