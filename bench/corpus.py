"""The benchmark corpus image: generated streaming from a seed, cached under ``bench/work/``.

``build_corpus(work, scale, seed)`` writes, once per parameter set, a directory
``work/corpus-KEY/`` holding an OCI image layout (``oci/``, tag ``latest``, gzip level 6
layers like a typical registry image) and a Docker 1.10-24 style docker-save tarball
(``image.tar``, ``bench/corpus:latest``), plus ``corpus.json`` describing both. KEY is a
hash of the parameters and ``GENERATOR_VERSION``: bump it whenever the output of
``plan``, ``textgen``, ``tarstream`` or this module changes. Layers are generated and
compressed in 1 MiB chunks (never a whole layer in memory), two layers at a time in worker
processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.dockersave import docker_save_legacy
from tests.lab.ocilayout import (
    CONFIG_TYPE,
    INDEX_TYPE,
    MANIFEST_TYPE,
    REF_NAME,
    LayoutInfo,
    canonical_json,
)
from zlib_ng import zlib_ng

from . import plan
from .tarstream import entry_chunks, rechunk

GENERATOR_VERSION = 2
REPO_TAG = "bench/corpus:latest"
TAG = "latest"
LAYER_NAMES = ("small", "random", "text", "patch")
GZIP_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CREATED = "2024-01-01T00:00:00Z"


@dataclass
class Corpus:
    """A built corpus. Paths are absolute; digests ``sha256:HEX``; sizes in bytes."""

    root: Path
    scale: float
    seed: int
    diff_ids: list[str]
    layer_digests: list[str]
    layer_sizes: list[int]
    tar_sizes: list[int]
    entries: list[int]
    config_digest: str
    manifest_digest: str
    build_seconds: float = 0.0
    layout: Path = field(init=False)
    docker_tar: Path = field(init=False)

    def __post_init__(self) -> None:
        self.layout = self.root / "oci"
        self.docker_tar = self.root / "image.tar"

    @property
    def uncompressed(self) -> int:
        return sum(self.tar_sizes)

    @property
    def compressed(self) -> int:
        return sum(self.layer_sizes)

    def blob(self, digest: str) -> Path:
        return self.layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def params_key(scale: float, seed: int) -> str:
    """The cache key of a parameter set (changes when any generator parameter changes)."""
    params = {
        "version": GENERATOR_VERSION,
        "scale": scale,
        "seed": seed,
        "constants": [
            plan.SMALL_FILES,
            plan.SMALL_BYTES,
            plan.RANDOM_BYTES,
            plan.RANDOM_SPLIT,
            plan.TEXT_FILES,
            plan.TEXT_BYTES,
            plan.MTIME_BASE,
            plan.MTIME_SPAN,
        ],
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def layer_stream(seed: int, scale: float, index: int) -> Iterator[bytes]:
    """The uncompressed tar of layer ``index`` (0-3), in chunks of about 1 MiB."""
    return rechunk(entry_chunks(plan.layers(seed, scale)[index], seed * 10 + index))


def diff_ids(seed: int, scale: float) -> list[str]:
    """sha256 of each layer tar, computed without writing anything."""
    out = []
    for index in range(len(LAYER_NAMES)):
        digest = hashlib.sha256()
        for chunk in layer_stream(seed, scale, index):
            digest.update(chunk)
        out.append("sha256:" + digest.hexdigest())
    return out


def _build_layer(seed: int, scale: float, index: int, blobs: Path) -> dict[str, Any]:
    """Write layer ``index`` gzip-compressed (level 6) into ``blobs``; return its numbers."""
    entries = len(plan.layers(seed, scale)[index])
    diff, packed = hashlib.sha256(), hashlib.sha256()
    comp = zlib_ng.compressobj(6, zlib_ng.DEFLATED, 31)
    tmp = blobs / f".layer-{index}.tmp"
    tar_size = size = 0
    with open(tmp, "wb") as out:

        def emit(data: bytes) -> None:
            nonlocal size
            if data:
                packed.update(data)
                out.write(data)
                size += len(data)

        for chunk in layer_stream(seed, scale, index):
            diff.update(chunk)
            tar_size += len(chunk)
            emit(comp.compress(chunk))
        emit(comp.flush())
    digest = "sha256:" + packed.hexdigest()
    os.replace(tmp, blobs / digest[7:])
    return {
        "diff_id": "sha256:" + diff.hexdigest(),
        "digest": digest,
        "size": size,
        "tar_size": tar_size,
        "entries": entries,
    }


def _write_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest[7:]).write_bytes(data)
    return digest, len(data)


def _write_layout(root: Path, layers: list[dict[str, Any]]) -> LayoutInfo:
    blobs = root / "blobs" / "sha256"
    config = {
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [x["diff_id"] for x in layers]},
        "history": [
            {"created": CREATED, "created_by": f"bench corpus: {n} layer"} for n in LAYER_NAMES
        ],
    }
    config_digest, config_size = _write_blob(blobs, canonical_json(config))
    descs = [{"mediaType": GZIP_TYPE, "digest": x["digest"], "size": x["size"]} for x in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "layers": descs,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
    }
    manifest_digest, manifest_size = _write_blob(blobs, canonical_json(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            {
                "mediaType": MANIFEST_TYPE,
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {REF_NAME: TAG},
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    (root / "index.json").write_bytes(canonical_json(index))
    (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return LayoutInfo(
        root,
        TAG,
        manifest_digest,
        manifest_size,
        config_digest,
        [x["diff_id"] for x in layers],
        [x["digest"] for x in layers],
        [x["size"] for x in layers],
        [GZIP_TYPE] * len(layers),
        manifest,
        config,
    )


def load_corpus(root: Path) -> Corpus | None:
    """The corpus cached at ``root``, or None when it is missing or incomplete."""
    try:
        data = json.loads((root / "corpus.json").read_text())
        corpus = Corpus(root=root, **data)
    except (OSError, ValueError, TypeError):
        return None
    return corpus if corpus.docker_tar.is_file() and corpus.layout.is_dir() else None


def build_corpus(
    work: Path, scale: float = 1.0, seed: int = 1, log: Callable[[str], None] = lambda _: None
) -> Corpus:
    """Build (or reuse the cached) corpus for ``scale`` and ``seed`` under ``work``."""
    import time

    root = work / f"corpus-{params_key(scale, seed)}"
    cached = load_corpus(root)
    if cached is not None:
        log(f"corpus: reusing {root}")
        return cached
    start = time.perf_counter()
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    blobs = tmp / "oci" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    log(f"corpus: generating scale={scale} seed={seed} into {root}")
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(_build_layer, seed, scale, i, blobs) for i in range(4)]
        layers = [f.result() for f in futures]
    info = _write_layout(tmp / "oci", layers)
    docker_save_legacy(info, tmp / "image.tar", repo_tags=(REPO_TAG,))
    corpus = Corpus(
        root=root,
        scale=scale,
        seed=seed,
        diff_ids=info.diff_ids,
        layer_digests=info.layer_digests,
        layer_sizes=info.layer_sizes,
        tar_sizes=[x["tar_size"] for x in layers],
        entries=[x["entries"] for x in layers],
        config_digest=info.config_digest,
        manifest_digest=info.manifest_digest,
        build_seconds=round(time.perf_counter() - start, 1),
    )
    data = {k: v for k, v in asdict(corpus).items() if k not in ("root", "layout", "docker_tar")}
    (tmp / "corpus.json").write_text(json.dumps(data, indent=1))
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    log(f"corpus: built in {corpus.build_seconds} s")
    return corpus
