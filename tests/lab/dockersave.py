"""docker-save tarballs in every flavour seen in the wild, built from a ``LayoutInfo``.

* ``to_docker_archive``: what skopeo writes (``skopeo copy oci:… docker-archive:…``).
* ``docker_save_legacy``: Docker 1.10-24 (``<v1id>/{VERSION,json,layer.tar}``, ``<cfg>.json``,
  ``manifest.json``, ``repositories``); ``gzip_layers=True`` stores gzip layer.tar files.
* ``docker_save_oci``: Docker 25+ (OCI layout with uncompressed layer blobs + manifest.json).
* ``docker_save_containerd``: containerd image store (original gzip blobs; index.json points
  at a nested image index; manifest.json points at the blobs).
* ``docker_save_podman``: podman/skopeo style (``<diffid>.tar`` files, legacy dirs whose
  layer.tar is a symlink, manifest.json written last).
* ``docker_save_multi``: several images in one legacy archive (shared layers stored once).
* ``docker_save_pre110``: pre-1.10 (only ``repositories`` and legacy dirs, no manifest.json).
* ``gzip_archive``: the whole tarball gzip-wrapped (``docker save | gzip``).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .archive import ArchiveWriter, open_archive
from .ocilayout import (
    CHUNK,
    CREATED,
    INDEX_TYPE,
    LAYER_TYPES,
    MANIFEST_TYPE,
    LayoutInfo,
    canonical_json,
    open_layer,
)
from .tools import skopeo

DEFAULT_TAGS = ("lab/image:latest",)


@contextmanager
def _plain_layers(info: LayoutInfo, gzip_layers: bool = False) -> Iterator[list[Path]]:
    """Uncompressed (or re-gzipped) copies of the layers, in a temp dir next to the layout."""
    with tempfile.TemporaryDirectory(dir=info.path.parent) as tmp:
        paths = []
        for i in range(len(info.layer_digests)):
            plain = open_layer(info, i, Path(tmp) / f"{i}.tar")
            if gzip_layers:
                packed = Path(tmp) / f"{i}.tar.gz"
                with open(plain, "rb") as fin, open(packed, "wb") as raw:
                    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                        shutil.copyfileobj(fin, gz, CHUNK)
                plain = packed
            paths.append(plain)
        yield paths


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def v1_ids(diff_ids: Sequence[str]) -> list[str]:
    """Deterministic legacy layer ids, one per layer, chained like Docker's (parent + diff_id)."""
    ids, parent = [], ""
    for diff_id in diff_ids:
        parent = hashlib.sha256(f"{parent}\n{diff_id}".encode()).hexdigest()
        ids.append(parent)
    return ids


def _v1_json(info: LayoutInfo, ids: list[str], i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": ids[i], "created": CREATED, "container_config": {}, "os": "linux"}
    if i:
        doc["parent"] = ids[i - 1]
    if i == len(ids) - 1:
        doc.update({k: info.config[k] for k in ("config", "architecture") if k in info.config})
    return doc


def split_tag(repo_tag: str) -> tuple[str, str]:
    """``host:5000/a/b:tag`` -> (``host:5000/a/b``, ``tag``); no tag means ``latest``."""
    repo, sep, tag = repo_tag.rpartition(":")
    if not sep or "/" in tag:
        return repo_tag, "latest"
    return repo, tag


def _repositories(repo_tags: Sequence[str], top_id: str) -> dict[str, dict[str, str]]:
    repos: dict[str, dict[str, str]] = {}
    for repo_tag in repo_tags:
        repo, tag = split_tag(repo_tag)
        repos.setdefault(repo, {})[tag] = top_id
    return repos


def _config_bytes(info: LayoutInfo) -> bytes:
    return info.blob(info.config_digest).read_bytes()


def to_docker_archive(
    oci_layout: LayoutInfo | Path, tag: str, out: Path, name: str | None = None
) -> Path:
    """``skopeo copy oci:LAYOUT:TAG docker-archive:OUT:NAME`` (NAME defaults to lab/DIR:TAG)."""
    path = oci_layout.path if isinstance(oci_layout, LayoutInfo) else Path(oci_layout)
    out.unlink(missing_ok=True)
    skopeo("copy", f"oci:{path}:{tag}", f"docker-archive:{out}:{name or f'lab/{path.name}:{tag}'}")
    return out


def docker_save_legacy(
    info: LayoutInfo, out: Path, repo_tags: Sequence[str] = DEFAULT_TAGS, gzip_layers: bool = False
) -> Path:
    """Docker 1.10-24 ``docker save`` layout; ``repo_tags=()`` writes ``"RepoTags": null``."""
    return docker_save_multi([(info, repo_tags)], out, gzip_layers)


def docker_save_multi(
    images: Sequence[tuple[LayoutInfo, Sequence[str]]], out: Path, gzip_layers: bool = False
) -> Path:
    """Several images in one legacy archive; identical layer chains are stored once."""
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    with open_archive(out) as ar:
        for info, repo_tags in images:
            ids = v1_ids(info.diff_ids)
            with _plain_layers(info, gzip_layers) as layers:
                for i, layer in enumerate(layers):
                    if ids[i] in seen:
                        continue
                    seen.add(ids[i])
                    ar.dir(ids[i])
                    ar.data(f"{ids[i]}/VERSION", b"1.0")
                    ar.json(f"{ids[i]}/json", _v1_json(info, ids, i))
                    ar.file(f"{ids[i]}/layer.tar", layer)
            config_name = f"{_hex(info.config_digest)}.json"
            if config_name not in seen:
                seen.add(config_name)
                ar.data(config_name, _config_bytes(info))
            entry = {"Config": config_name, "RepoTags": list(repo_tags) or None}
            manifest.append({**entry, "Layers": [f"{i}/layer.tar" for i in ids]})
            for repo, tags in _repositories(repo_tags, ids[-1]).items():
                repositories.setdefault(repo, {}).update(tags)
        ar.json("manifest.json", manifest)
        if repositories:
            ar.json("repositories", repositories)
    return out


def docker_save_pre110(
    info: LayoutInfo, out: Path, repo_tags: Sequence[str] = DEFAULT_TAGS
) -> Path:
    """Pre-1.10 ``docker save``: legacy dirs and ``repositories`` only (no manifest.json)."""
    ids = v1_ids(info.diff_ids)
    with open_archive(out) as ar, _plain_layers(info) as layers:
        for i, layer in enumerate(layers):
            ar.dir(ids[i])
            ar.data(f"{ids[i]}/VERSION", b"1.0")
            ar.json(f"{ids[i]}/json", _v1_json(info, ids, i))
            ar.file(f"{ids[i]}/layer.tar", layer)
        ar.json("repositories", _repositories(repo_tags, ids[-1]))
    return out


def docker_save_podman(
    info: LayoutInfo, out: Path, repo_tags: Sequence[str] = DEFAULT_TAGS
) -> Path:
    """podman/skopeo ``docker-archive``: ``<diffid>.tar`` + symlinked legacy dirs, manifest.json last."""
    ids = v1_ids(info.diff_ids)
    config_name = f"{_hex(info.config_digest)}.json"
    with open_archive(out) as ar, _plain_layers(info) as layers:
        for diff_id, layer in zip(info.diff_ids, layers, strict=True):
            ar.file(f"{_hex(diff_id)}.tar", layer)
        ar.data(config_name, _config_bytes(info))
        for i, diff_id in enumerate(info.diff_ids):
            ar.dir(ids[i])
            ar.symlink(f"{ids[i]}/layer.tar", f"../{_hex(diff_id)}.tar")
            ar.data(f"{ids[i]}/VERSION", b"1.0")
            ar.json(f"{ids[i]}/json", _v1_json(info, ids, i))
        ar.json("repositories", _repositories(repo_tags, ids[-1]))
        layers_list = [f"{_hex(d)}.tar" for d in info.diff_ids]
        ar.json(
            "manifest.json",
            [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": layers_list}],
        )
    return out


def _index_entry(
    media_type: str, digest: str, size: int, repo_tag: str | None, platform: dict[str, str] | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if platform:
        entry["platform"] = platform
    if repo_tag:
        name = repo_tag if "." in repo_tag.split("/")[0] else f"docker.io/{repo_tag}"
        entry["annotations"] = {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": split_tag(repo_tag)[1],
        }
    return entry


def _tags_or_none(repo_tags: Sequence[str]) -> list[str | None]:
    """One index entry per tag, or one unnamed entry for an untagged save."""
    return list(repo_tags) if repo_tags else [None]


def _platform(info: LayoutInfo) -> dict[str, str]:
    return {"architecture": info.config["architecture"], "os": info.config["os"]}


def _blob(ar: ArchiveWriter, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    ar.data(f"blobs/sha256/{_hex(digest)}", data)
    return digest, len(data)


def docker_save_oci(info: LayoutInfo, out: Path, repo_tags: Sequence[str] = DEFAULT_TAGS) -> Path:
    """Docker 25+ ``docker save``: OCI layout (uncompressed layer blobs) plus manifest.json."""
    with open_archive(out) as ar, _plain_layers(info) as layers:
        ar.json("oci-layout", {"imageLayoutVersion": "1.0.0"})
        ar.dir("blobs")
        ar.dir("blobs/sha256")
        descs: list[dict[str, Any]] = []
        for diff_id, layer in zip(info.diff_ids, layers, strict=True):
            ar.file(f"blobs/sha256/{_hex(diff_id)}", layer)
            size = layer.stat().st_size
            descs.append({"mediaType": LAYER_TYPES["none"], "digest": diff_id, "size": size})
        config_digest, _ = _blob(ar, _config_bytes(info))
        manifest = {**info.manifest, "layers": descs}
        m_digest, m_size = _blob(ar, canonical_json(manifest))
        platform = _platform(info)
        entries = [
            _index_entry(MANIFEST_TYPE, m_digest, m_size, t, platform)
            for t in _tags_or_none(repo_tags)
        ]
        ar.json("index.json", {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries})
        ar.json(
            "manifest.json",
            [
                {
                    "Config": f"blobs/sha256/{_hex(config_digest)}",
                    "RepoTags": list(repo_tags),
                    "Layers": [f"blobs/sha256/{_hex(d)}" for d in info.diff_ids],
                    "LayerSources": {d["digest"]: d for d in descs},
                }
            ],
        )
        ar.json("repositories", _repositories(repo_tags, _hex(info.diff_ids[-1])))
    return out


def docker_save_containerd(
    info: LayoutInfo, out: Path, repo_tags: Sequence[str] = DEFAULT_TAGS
) -> Path:
    """containerd image store: original (gzip) blobs, index.json -> nested index -> manifest."""
    with open_archive(out) as ar:
        ar.json("oci-layout", {"imageLayoutVersion": "1.0.0"})
        ar.dir("blobs")
        ar.dir("blobs/sha256")
        for digest in info.layer_digests:
            ar.file(f"blobs/sha256/{_hex(digest)}", info.blob(digest))
        ar.data(f"blobs/sha256/{_hex(info.config_digest)}", _config_bytes(info))
        ar.file(f"blobs/sha256/{_hex(info.manifest_digest)}", info.blob(info.manifest_digest))
        child = _index_entry(
            MANIFEST_TYPE, info.manifest_digest, info.manifest_size, None, _platform(info)
        )
        nested = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [child]}
        n_digest, n_size = _blob(ar, canonical_json(nested))
        entries = [
            _index_entry(INDEX_TYPE, n_digest, n_size, t, None) for t in _tags_or_none(repo_tags)
        ]
        ar.json("index.json", {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries})
        layer_names = [f"blobs/sha256/{_hex(d)}" for d in info.layer_digests]
        ar.json(
            "manifest.json",
            [
                {
                    "Config": f"blobs/sha256/{_hex(info.config_digest)}",
                    "RepoTags": list(repo_tags),
                    "Layers": layer_names,
                }
            ],
        )
    return out


def gzip_archive(src: Path, out: Path) -> Path:
    """``docker save | gzip``: the whole tarball wrapped in gzip (deterministic header)."""
    with open(src, "rb") as fin, open(out, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            shutil.copyfileobj(fin, gz, CHUNK)
    return out
