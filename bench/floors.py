"""Floors: the unavoidable work of each job, done by the plainest single-threaded loop.

Each floor moves the same bytes as the job, with the fastest libraries, one pass per byte,
1 MiB reads, and nothing else: no parsing beyond tar headers, no retries, no progress, no
process start-up. A tool within 1.5x of its floor is spending its time on the job.

* download: one keep-alive ``http.client`` connection, ``readinto`` a 1 MiB buffer;
* sha256: ``hashlib`` (OpenSSL);
* decompress: ISA-L (``isal_zlib``), the fastest gzip decoder here (docs/dev/compression.md);
* compress: ISA-L level 1, our default (docs/dev/compression.md);
* upload: one chunked PATCH per blob, then PUT (the registry's own ingest is included);
* write: buffered writes to the same disk as the tools' outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from isal import isal_zlib

from .corpus import Corpus
from .regclient import RegClient
from .tarwalk import CHUNK, Reader, Slice, copy_body, docker_layers, members, padded, set_mtime

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _blobs(corpus: Corpus) -> list[str]:
    return [corpus.config_digest, *corpus.layer_digests]


def pull(host: str, repo: str, corpus: Corpus, out: Path, decompress: bool) -> None:
    """A, B (``decompress``) and B': download each blob, sha256 it, gunzip it, write it."""
    out.mkdir(parents=True, exist_ok=True)
    with RegClient(host) as reg:
        reg.manifest(repo, "latest")
        for i, digest in enumerate(_blobs(corpus)):
            hasher = hashlib.sha256()
            gunzip = isal_zlib.decompressobj(31) if decompress and i else None
            with open(out / f"{i}.blob", "wb") as sink:
                for chunk in reg.blob_chunks(repo, digest):
                    hasher.update(chunk)
                    sink.write(gunzip.decompress(chunk) if gunzip else chunk)
            if "sha256:" + hasher.hexdigest() != digest:
                raise RuntimeError(f"digest mismatch for {digest}")


def rewrite(corpus: Corpus, out: Path, normalize: bool) -> None:
    """C (``normalize``): rewrite each header's mtime, sha256 the new layer, write it.
    C0: copy each layer with a sha256 (verifying the diff_id)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(corpus.docker_tar, "rb", buffering=CHUNK) as f:
        for i, (offset, size) in enumerate(docker_layers(str(corpus.docker_tar))):
            hasher = hashlib.sha256()
            with open(out / f"{i}.tar", "wb", buffering=CHUNK) as sink:
                src = Slice(f, offset, size)
                if normalize:
                    for member in members(src):
                        set_mtime(member.header, 0)
                        sink.write(member.header)
                        hasher.update(member.header)
                        copy_body(src, padded(member.size), [sink], [hasher])
                copy_body(src, src.left, [sink], [hasher])  # end blocks, or everything for C0
            if not normalize and "sha256:" + hasher.hexdigest() != corpus.diff_ids[i]:
                raise RuntimeError(f"diff_id mismatch in layer {i}")


def _compressed(src: Reader, size: int, hasher: hashlib._Hash) -> Iterator[bytes]:
    comp = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    while size > 0:
        data = src.read(min(CHUNK, size))
        size -= len(data)
        if out := comp.compress(data):
            hasher.update(out)
            yield out
    tail = comp.flush()
    hasher.update(tail)
    yield tail


def _push_layer(reg: RegClient, repo: str, src: Reader, size: int) -> dict[str, object]:
    hasher, counted = hashlib.sha256(), 0

    def chunks() -> Iterator[bytes]:
        nonlocal counted
        for piece in _compressed(src, size, hasher):
            counted += len(piece)
            yield piece

    digest = reg.upload(repo, chunks(), lambda: "sha256:" + hasher.hexdigest())
    return {"mediaType": DOCKER_GZIP, "digest": digest, "size": counted}


def push(corpus: Corpus, host: str, repo: str) -> list[int]:
    """D: gzip each layer (ISA-L level 1) while uploading it; then config and manifest.
    Returns the compressed layer sizes."""
    config = corpus.blob(corpus.config_digest).read_bytes()
    with RegClient(host) as reg, open(corpus.docker_tar, "rb", buffering=CHUNK) as f:
        layers = [
            _push_layer(reg, repo, Slice(f, offset, size), size)
            for offset, size in docker_layers(str(corpus.docker_tar))
        ]
        reg.put_blob(repo, config, corpus.config_digest)
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "layers": layers,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "digest": corpus.config_digest,
                "size": len(config),
            },
        }
        reg.put_manifest(repo, "latest", json.dumps(manifest).encode(), DOCKER_MANIFEST)
    return [int(str(x["size"])) for x in layers]


def mount(host: str, src_repo: str, repo: str, corpus: Corpus) -> None:
    """E: mount every blob from ``src_repo`` and put the manifest."""
    with RegClient(host) as reg:
        _status, manifest = reg.manifest(src_repo, "latest")
        for digest in _blobs(corpus):
            if not reg.mount(repo, digest, src_repo):
                raise RuntimeError(f"registry refused to mount {digest}")
        reg.put_manifest(repo, "latest", manifest, OCI_MANIFEST)


def copy(src_host: str, src_repo: str, dst_host: str, repo: str, corpus: Corpus) -> None:
    """E': stream every blob from one registry to the other (sha256 on the way), then the
    manifest."""
    with RegClient(src_host) as src, RegClient(dst_host) as dst:
        _status, manifest = src.manifest(src_repo, "latest")
        for digest in _blobs(corpus):
            hasher = hashlib.sha256()

            def chunks(digest: str = digest, hasher: hashlib._Hash = hasher) -> Iterator[bytes]:
                for chunk in src.blob_chunks(src_repo, digest):
                    hasher.update(chunk)
                    yield bytes(chunk)

            dst.upload(repo, chunks(), lambda d=digest: d)
            if "sha256:" + hasher.hexdigest() != digest:
                raise RuntimeError(f"digest mismatch for {digest}")
        dst.put_manifest(repo, "latest", manifest, OCI_MANIFEST)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _create(path: Path, mode: int) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        return os.open(path, flags, mode)
    except FileExistsError:
        _remove(path)
        return os.open(path, flags, mode)


def expand(corpus: Corpus, out: Path) -> None:
    """G: write each layer tar, and extract it into ``out/rootfs`` applying whiteouts
    (regular files get their mode at creation and their mtime set)."""
    rootfs = out / "rootfs"
    rootfs.mkdir(parents=True, exist_ok=True)
    with open(corpus.docker_tar, "rb", buffering=CHUNK) as f:
        for i, (offset, size) in enumerate(docker_layers(str(corpus.docker_tar))):
            (out / str(i)).mkdir()
            with open(out / str(i) / "layer.tar", "wb", buffering=CHUNK) as copy_out:
                src = Slice(f, offset, size)
                for m in members(src):
                    copy_out.write(m.header)
                    path = rootfs / m.name.rstrip("/")
                    base = path.name
                    if base == ".wh..wh..opq":
                        for child in path.parent.iterdir():
                            _remove(child)
                    elif base.startswith(".wh."):
                        _remove(path.with_name(base[4:]))
                    elif m.type == b"5":
                        path.mkdir(parents=True, exist_ok=True)
                    elif m.type == b"2":
                        _remove(path)
                        os.symlink(m.linkname, path)
                    elif m.type == b"1":
                        _remove(path)
                        os.link(rootfs / m.linkname, path)
                    elif m.type in (b"0", b"\0"):
                        fd = _create(path, m.mode & 0o7777)
                        with open(fd, "wb", closefd=True) as sink:
                            copy_body(src, m.size, [sink, copy_out], [])
                        copy_body(src, padded(m.size) - m.size, [copy_out], [])
                        os.utime(path, (m.mtime, m.mtime))
                        continue
                    copy_body(src, padded(m.size), [copy_out], [])
                copy_body(src, src.left, [copy_out], [])
