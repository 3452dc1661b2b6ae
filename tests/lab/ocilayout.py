"""Write an OCI image layout by hand (stdlib only): oci-layout, index.json, blobs/sha256/*.

Layers come from ``TarSpec`` lists (or ready-made uncompressed tar files) and are streamed to
disk, hashed and compressed in 1 MiB chunks, so big layers never sit in memory. JSON is
serialised deterministically (sorted keys, no spaces), so the same input gives the same digests.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .tarspec import TarSpec, sha256_file, write_layer_tar

Compression = Literal["gzip", "none", "zstd"]
LAYER_TYPES: dict[str, str] = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "none": "application/vnd.oci.image.layer.v1.tar",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "2024-01-01T00:00:00Z"
CHUNK = 1 << 20


@dataclass
class LayoutInfo:
    """What ``build_oci_layout`` wrote. Digests are ``sha256:HEX`` strings."""

    path: Path
    tag: str
    manifest_digest: str
    manifest_size: int
    config_digest: str
    diff_ids: list[str]
    layer_digests: list[str]
    layer_sizes: list[int]
    layer_media_types: list[str]
    manifest: dict[str, Any]
    config: dict[str, Any]

    @property
    def ref(self) -> str:
        """skopeo reference ``oci:PATH:TAG``."""
        return f"oci:{self.path}:{self.tag}"

    def blob(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        return self.path / "blobs" / algo / hexpart


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _write_blob(root: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    target = root / "blobs" / "sha256" / digest[7:]
    target.write_bytes(data)
    return digest, len(data)


def compress_file(src: Path, dst: Path, compression: Compression) -> None:
    """Stream ``src`` to ``dst`` compressed (deterministic gzip: mtime 0, no file name)."""
    if compression == "none":
        shutil.copyfile(src, dst)
    elif compression == "gzip":
        with open(src, "rb") as fin, open(dst, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                while chunk := fin.read(CHUNK):
                    gz.write(chunk)
    elif compression == "zstd":
        zstd = shutil.which("zstd")
        if zstd is None:
            raise RuntimeError("zstd compression needs the zstd CLI (apt-get install zstd)")
        subprocess.run([zstd, "-q", "-f", "-T1", "-3", str(src), "-o", str(dst)], check=True)
    else:
        raise ValueError(f"unknown compression {compression!r}")


def _add_layer(
    root: Path, layer: Sequence[TarSpec] | Path, compression: Compression
) -> dict[str, Any]:
    blobs = root / "blobs" / "sha256"
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        plain = Path(tmp) / "layer.tar"
        if isinstance(layer, Path):
            plain = layer
            diff_id = sha256_file(layer)
        else:
            diff_id = write_layer_tar(layer, plain)
        packed = Path(tmp) / "layer.packed"
        compress_file(plain, packed, compression)
        digest = sha256_file(packed)
        size = packed.stat().st_size
        os.replace(packed, blobs / digest[7:])
    return {
        "mediaType": LAYER_TYPES[compression],
        "digest": digest,
        "size": size,
        "diff_id": diff_id,
    }


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Shallow merge, except that a dict value merges into a dict value one level down."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _update_index(root: Path, entry: dict[str, Any], tag: str) -> None:
    index_file = root / "index.json"
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
    if index_file.exists():
        index = json.loads(index_file.read_text())
    kept = [m for m in index.get("manifests", []) if m.get("annotations", {}).get(REF_NAME) != tag]
    index["manifests"] = [*kept, entry]
    index_file.write_bytes(canonical_json(index))


def build_oci_layout(
    path: Path | str,
    layers: Sequence[Sequence[TarSpec] | Path],
    config_overrides: Mapping[str, Any] | None = None,
    tag: str = "latest",
    compression: Compression = "gzip",
    *,
    manifest_annotations: Mapping[str, str] | None = None,
) -> LayoutInfo:
    """Write (or add ``tag`` to) an OCI image layout at ``path``.

    ``layers``: one ``TarSpec`` list per layer, bottom first (or a Path to an uncompressed tar).
    ``config_overrides`` merge into the image config (a dict value such as ``"config"`` merges
    one level down). Returns the digests needed to check what a tool did with the image.
    """
    root = Path(path)
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    descs = [_add_layer(root, layer, compression) for layer in layers]
    diff_ids = [d.pop("diff_id") for d in descs]
    config: dict[str, Any] = {
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": CREATED, "created_by": f"lab layer {i}"} for i in range(len(descs))
        ],
    }
    config = _merge(config, config_overrides or {})
    config_digest, config_size = _write_blob(root, canonical_json(config))
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
        "layers": descs,
    }
    if manifest_annotations:
        manifest["annotations"] = dict(manifest_annotations)
    manifest_digest, manifest_size = _write_blob(root, canonical_json(manifest))
    entry = {
        "mediaType": MANIFEST_TYPE,
        "digest": manifest_digest,
        "size": manifest_size,
        "annotations": {REF_NAME: tag},
        "platform": {"architecture": config["architecture"], "os": config["os"]},
    }
    _update_index(root, entry, tag)
    return LayoutInfo(
        path=root,
        tag=tag,
        manifest_digest=manifest_digest,
        manifest_size=manifest_size,
        config_digest=config_digest,
        diff_ids=diff_ids,
        layer_digests=[d["digest"] for d in descs],
        layer_sizes=[d["size"] for d in descs],
        layer_media_types=[d["mediaType"] for d in descs],
        manifest=manifest,
        config=config,
    )


def open_layer(info: LayoutInfo, index: int, dst: Path) -> Path:
    """Write layer ``index`` of ``info`` uncompressed to ``dst`` (streamed); return ``dst``."""
    src, media_type = info.blob(info.layer_digests[index]), info.layer_media_types[index]
    if media_type.endswith("+gzip"):
        with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK)
    elif media_type.endswith("+zstd"):
        subprocess.run(["zstd", "-q", "-d", "-f", str(src), "-o", str(dst)], check=True)
    else:
        shutil.copyfile(src, dst)
    return dst
