"""Issue 2, point 2: a docker-save tarball's layer compression is found by magic bytes.

``<id>/layer.tar`` members may hold a plain tar, a gzip stream or a zstd stream whatever
their name says. Each flavour must read as the same image: a tarball output is byte-identical
to the one made from the plain archive, and an OCI layout output keeps the compressed bytes
it was given (no recompression) and passes ``skopeo copy`` (which verifies every digest and
diff_id) and ``umoci stat``.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from lab.tools import run_occystrap, skopeo, umoci
from occystrap import api
from occystrap.sample import build

MEDIA = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def recompress_layers(src: Path, dst: Path, kind: str) -> list[bytes]:
    """Copy a docker-save tarball with every layer.tar member compressed with ``kind``."""
    stored: list[bytes] = []
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin.getmembers():
            body = tin.extractfile(member) if member.isfile() else None
            data = body.read() if body else None
            if data is not None and member.name.endswith("/layer.tar"):
                data = _compress(kind, data)
                stored.append(data)
                member.size = len(data)
            tout.addfile(member, io.BytesIO(data) if data is not None else None)
    return stored


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    work = tmp_path_factory.mktemp("compression")
    path = work / "plain.tar"
    build(str(path))
    out = work / "plain-out.tar"
    api.process(f"tar://{path}", f"tar://{out}")
    return path, out.read_bytes()


def _layout_manifest(layout: Path, ref: str) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    [entry] = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref
    ]
    doc: dict[str, Any] = json.loads(
        (layout / "blobs/sha256" / entry["digest"].removeprefix("sha256:")).read_bytes()
    )
    return doc


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_compressed_layer_members_read_like_plain_ones(
    plain: tuple[Path, bytes], tmp_path: Path, kind: str
) -> None:
    source, plain_out = plain
    archive = tmp_path / f"{kind}.tar"
    stored = recompress_layers(source, archive, kind)
    # tarball output: the same bytes as from the plain archive (layers decompressed, diff_ids checked)
    out = tmp_path / "out.tar"
    api.process(f"tar://{archive}", f"tar://{out}")
    assert out.read_bytes() == plain_out
    # layout output: the given compressed bytes are kept, with the matching media type
    layout = tmp_path / "layout"
    api.process(f"tar://{archive}", f"ocidir://{layout}:v1")
    manifest = _layout_manifest(layout, "v1")
    assert [x["mediaType"] for x in manifest["layers"]] == [MEDIA[kind]] * len(stored)
    for desc, data in zip(manifest["layers"], stored, strict=True):
        blob = layout / "blobs/sha256" / desc["digest"].removeprefix("sha256:")
        assert blob.read_bytes() == data, "a layer nobody changed was recompressed"
        assert desc["size"] == len(data)
    skopeo("copy", f"oci:{layout}:v1", f"oci:{tmp_path / 'judge'}:v1")
    umoci("stat", "--image", f"{layout}:v1")


def test_zstd_layers_on_standard_input(plain: tuple[Path, bytes], tmp_path: Path) -> None:
    source, plain_out = plain
    archive = tmp_path / "zstd.tar"
    recompress_layers(source, archive, "zstd")
    done = run_occystrap("--quiet", "process", "tar://-", "tar://-", input=archive.read_bytes())
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == plain_out


def test_a_zstd_layer_with_wrong_content_is_refused(
    plain: tuple[Path, bytes], tmp_path: Path
) -> None:
    """The diff_id of a compressed member is checked after decompression."""
    source, _ = plain
    archive = tmp_path / "zstd.tar"
    recompress_layers(source, archive, "zstd")
    spoiled = tmp_path / "spoiled.tar"
    with tarfile.open(source) as tin, tarfile.open(spoiled, "w") as tout:
        first = True
        for member in tin.getmembers():
            body = tin.extractfile(member) if member.isfile() else None
            data = body.read() if body else None
            if data is not None and member.name.endswith("/layer.tar"):
                if first:
                    data = data.replace(b"Hello from", b"Jello from")
                    assert b"Jello from" in data
                    first = False
                data = _compress("zstd", data)
                member.size = len(data)
            tout.addfile(member, io.BytesIO(data) if data is not None else None)
    done = run_occystrap("process", f"tar://{spoiled}", f"ocidir://{tmp_path / 'out'}:v1")
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "mismatch" in err and "Traceback" not in err, err
    assert not (tmp_path / "out" / "index.json").exists()
