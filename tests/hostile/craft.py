"""Hand-made bytes for the hostile corpus: layer tars, crafted headers, layouts, archives.

Only the stdlib, ``zstandard`` and the lab's builders are used (never occystrap's own code),
so the corpus is independent evidence. Everything is deterministic: gzip with mtime 0 and
no file name, canonical JSON, fixed tar mtimes. Layer tars end right after their two zero
blocks (no 10 KiB record padding) to keep the checked-in corpus small.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from lab.archive import open_archive
from lab.ocilayout import CONFIG_TYPE, CREATED, INDEX_TYPE, LAYER_TYPES, MANIFEST_TYPE, REF_NAME
from lab.tarspec import TarSpec, directory, file, tar_bytes

BLOCK = 512
BASE: list[TarSpec] = [directory("safe"), file("safe/ok.txt", "benign\n")]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


def tar_of(specs: Sequence[TarSpec]) -> bytes:
    """A layer tar of ``specs`` ending right after the end-of-archive marker."""
    data = tar_bytes(specs)
    end = len(data.rstrip(b"\0"))
    end += -end % BLOCK
    return data[:end] + bytes(2 * BLOCK)


def gz(data: bytes, level: int = 9) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=level) as f:
        f.write(data)
    return buf.getvalue()


def gz_zeros(size: int) -> bytes:
    """gzip of ``size`` zero bytes, compressed 1 MiB at a time (a decompression bomb)."""
    buf = io.BytesIO()
    zero = bytes(1 << 20)
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        left = size
        while left:
            n = min(left, len(zero))
            f.write(zero[:n])
            left -= n
    return buf.getvalue()


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)


def zst_zeros(size: int) -> bytes:
    """zstd of ``size`` zero bytes (one frame, streamed; a decompression bomb)."""
    cctx = zstandard.ZstdCompressor(level=19, write_checksum=True, write_content_size=False)
    out = io.BytesIO()
    with cctx.stream_writer(out, closefd=False) as w:
        zero = bytes(1 << 20)
        left = size
        while left:
            n = min(left, len(zero))
            w.write(zero[:n])
            left -= n
    return out.getvalue()


# -- crafted tar headers ------------------------------------------------------------------


def header(
    name: str | bytes,
    *,
    size: int | bytes = 0,
    kind: bytes = tarfile.REGTYPE,
    linkname: str = "",
    mode: bytes = b"0000644\0",
    checksum: bytes | None = None,
    extra: dict[int, bytes] | None = None,
) -> bytes:
    """One USTAR header block. ``size`` may be raw field bytes (12), ``checksum`` raw (8);
    ``extra`` patches bytes at offsets (before the checksum is computed)."""
    raw = bytearray(BLOCK)
    bname = name.encode() if isinstance(name, str) else name
    raw[0 : len(bname)] = bname
    raw[100:108] = mode
    raw[108:116] = b"0000000\0"
    raw[116:124] = b"0000000\0"
    raw[124:136] = size if isinstance(size, bytes) else b"%011o\0" % size
    raw[136:148] = b"%011o\0" % 1_700_000_000
    raw[156:157] = kind
    raw[157 : 157 + len(linkname)] = linkname.encode()
    raw[257:265] = b"ustar\x0000"
    for offset, patch in (extra or {}).items():
        raw[offset : offset + len(patch)] = patch
    raw[148:156] = b" " * 8
    if checksum is None:
        raw[148:156] = b"%06o\0 " % sum(raw)
    else:
        raw[148:156] = checksum
    return bytes(raw)


def pax_records(records: dict[str, str]) -> bytes:
    out = b""
    for key, value in records.items():
        body = f" {key}={value}\n".encode("utf-8", "surrogateescape")
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n = len(str(n)) + len(body)
        out += str(n).encode() + body
    return out


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(name: str, data: bytes, **kw: Any) -> bytes:
    """A regular member: header (valid unless ``kw`` says otherwise) and padded body."""
    return header(name, size=len(data), **kw) + padded(data)


def pax_member(records: dict[str, str], name: str, data: bytes, **kw: Any) -> bytes:
    recs = pax_records(records)
    return member("PaxHeader/x", recs, kind=b"x") + member(name, data, **kw)


def end() -> bytes:
    return bytes(2 * BLOCK)


# -- OCI layouts --------------------------------------------------------------------------


@dataclass
class Blob:
    """A layer as stored: bytes, media type, and the diff_id the config claims."""

    data: bytes
    media_type: str
    diff_id: str
    desc: dict[str, Any] = field(default_factory=dict)  # descriptor overrides (None deletes)


def gzip_layer(specs: Sequence[TarSpec] = BASE) -> Blob:
    plain = tar_of(specs)
    return Blob(gz(plain), LAYER_TYPES["gzip"], sha256(plain))


def plain_layer(data: bytes) -> Blob:
    return Blob(data, LAYER_TYPES["none"], sha256(data))


def base_config(diff_ids: Sequence[str]) -> dict[str, Any]:
    return {
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": CREATED, "created_by": f"layer {i}"} for i in range(len(diff_ids))],
    }


Edit = Callable[[dict[str, Any]], dict[str, Any] | bytes | None]


@dataclass
class Written:
    root: Path
    manifest: bytes
    config: bytes
    index: bytes

    def blob(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]


def _apply(edit: Edit | None, obj: dict[str, Any]) -> bytes:
    if edit is None:
        return canonical(obj)
    result = edit(obj)
    if isinstance(result, bytes):
        return result
    return canonical(obj if result is None else result)


def _descriptor(media_type: str, data: bytes, overrides: dict[str, Any]) -> dict[str, Any]:
    desc: dict[str, Any] = {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
    for key, value in overrides.items():
        if value is None:
            desc.pop(key, None)
        else:
            desc[key] = value
    return desc


def write_blob(root: Path, data: bytes) -> str:
    digest = sha256(data)
    path = root / "blobs" / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def write_layout(
    root: Path,
    layers: Sequence[Blob] = (),
    *,
    config: Edit | None = None,
    manifest: Edit | None = None,
    index: Edit | None = None,
    config_desc: dict[str, Any] | None = None,
    manifest_desc: dict[str, Any] | None = None,
    tag: str = "latest",
) -> Written:
    """An OCI layout with one image. Each ``Edit`` may change the object (return None or a
    new dict) or replace it with raw bytes; ``*_desc`` override descriptor fields."""
    layers = list(layers) or [gzip_layer()]
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    for layer in layers:
        write_blob(root, layer.data)
    config_raw = _apply(config, base_config([b.diff_id for b in layers]))
    write_blob(root, config_raw)
    manifest_obj = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": _descriptor(CONFIG_TYPE, config_raw, config_desc or {}),
        "layers": [_descriptor(b.media_type, b.data, b.desc) for b in layers],
    }
    manifest_raw = _apply(manifest, manifest_obj)
    write_blob(root, manifest_raw)
    entry = _descriptor(MANIFEST_TYPE, manifest_raw, manifest_desc or {})
    entry.setdefault("annotations", {REF_NAME: tag})
    index_raw = _apply(index, {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry]})
    (root / "index.json").write_bytes(index_raw)
    return Written(root, manifest_raw, config_raw, index_raw)


def index_blob(root: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Write an image index blob listing ``entries``; return its descriptor."""
    raw = canonical({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries})
    digest = write_blob(root, raw)
    return {"mediaType": INDEX_TYPE, "digest": digest, "size": len(raw)}


# -- docker-save archives -----------------------------------------------------------------


def docker_save(
    out: Path,
    layers: Sequence[bytes] = (),
    *,
    config: Edit | None = None,
    manifest_json: Edit | None = None,
    diff_ids: Sequence[str] | None = None,
    extra: Sequence[tuple[str, bytes]] = (),
) -> Path:
    """A Docker 1.10+ style archive: ``<n>/layer.tar``, ``config.json``, ``manifest.json``.

    ``layers`` are the layer.tar bytes (default: the benign base layer); the config's
    diff_ids are their digests unless ``diff_ids`` says otherwise.
    """
    layer_data = list(layers) or [tar_of(BASE)]
    ids = list(diff_ids) if diff_ids is not None else [sha256(d) for d in layer_data]
    config_raw = _apply(config, base_config(ids))
    config_name = sha256(config_raw)[7:] + ".json"
    names = [f"{i:02d}/layer.tar" for i in range(len(layer_data))]
    mj = [{"Config": config_name, "RepoTags": ["lab/hostile:latest"], "Layers": names}]
    wrapped: dict[str, Any] = {"": mj}  # an edit sees {"": [entry]} and may replace it
    result = manifest_json(wrapped) if manifest_json is not None else None
    mj_raw = result if isinstance(result, bytes) else canonical((result or wrapped)[""])
    with open_archive(out) as ar:
        for name, data in zip(names, layer_data, strict=True):
            ar.dir(name.split("/")[0])
            ar.data(name, data)
        ar.data(config_name, config_raw)
        for name, data in extra:
            ar.data(name, data)
        ar.data("manifest.json", mj_raw)
    trim_archive(out)
    return out


def trim_archive(path: Path) -> None:
    """Cut the 10 KiB record padding ``tarfile`` adds after the end-of-archive marker."""
    data = path.read_bytes()
    keep = len(data.rstrip(b"\0"))
    keep += -keep % BLOCK
    path.write_bytes(data[:keep] + bytes(2 * BLOCK))
