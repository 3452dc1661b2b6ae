"""ocidir:// source and sink, judged by skopeo, umoci, oci-image-tool and the OCI JSON schemas."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab import images, schemas
from lab.ocilayout import LayoutInfo, canonical_json
from lab.tarspec import file
from lab.tools import require, run, skopeo, umoci
from occystrap import api
from occystrap.errors import (
    BlobNotFound,
    DigestMismatch,
    ImageNotFound,
    IntegrityError,
    InvalidOption,
    InvalidReference,
    LimitExceeded,
    OutputError,
    PlatformNotFound,
    SizeMismatch,
    UnsupportedFormat,
)
from occystrap.events import Stats
from occystrap.model.descriptor import Platform
from occystrap.transports.base import RunContext
from occystrap.transports.ocilayout.layout import split_target

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REF = "org.opencontainers.image.ref.name"


# -- helpers ------------------------------------------------------------------------------------


def write_blob(root: Path, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}


def read_blob(root: Path, digest: str) -> bytes:
    return (root / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def index_of(root: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((root / "index.json").read_text())
    return doc


def refs_of(root: Path) -> list[str]:
    return sorted(m.get("annotations", {}).get(REF, "") for m in index_of(root)["manifests"])


def temp_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob(".tmp-*"))


def judge(root: Path, ref: str, tmp: Path, *, image_tool: bool = True) -> None:
    """Everything a layout consumer checks: schemas, blob names, oci-image-tool, umoci, skopeo."""
    schemas.validate("layout", root / "oci-layout")
    index = index_of(root)
    schemas.validate("index", index)
    for entry in index["manifests"]:
        raw = read_blob(root, entry["digest"])
        assert len(raw) == entry["size"]
        manifest = json.loads(raw)
        schemas.validate("manifest", manifest)
        schemas.validate("config", read_blob(root, manifest["config"]["digest"]))
    for blob in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, (
            f"{blob} does not match its name"
        )
    if image_tool:
        run(
            [
                require("oci-image-tool"),
                "validate",
                "--type",
                "image",
                "--ref",
                f"name={ref}",
                str(alone(root, ref, tmp)),
            ]
        )
    assert ref in umoci("ls", "--layout", str(root)).stdout.split()
    umoci("stat", "--image", f"{root}:{ref}")
    inspected = json.loads(skopeo("inspect", f"oci:{root}:{ref}").stdout)
    assert inspected["Digest"] == next(
        m["digest"] for m in index["manifests"] if m["annotations"][REF] == ref
    )
    other = tmp / f"skopeo-copy-{ref}"
    skopeo("copy", f"oci:{root}:{ref}", f"oci:{other}:{ref}")  # skopeo verifies every digest


def alone(root: Path, ref: str, tmp: Path) -> Path:
    """``root`` with only ``ref`` in index.json (a hard-linked copy when there are others).

    oci-image-tool 1.0.0-rc1 deletes non-matching entries from the list it iterates, so with
    three or more entries ``--ref name=X`` often reports "not unique" for a unique X.
    """
    index = index_of(root)
    if len(index["manifests"]) == 1:
        return root
    copy = tmp / f"alone-{ref}"
    shutil.copytree(root, copy, copy_function=os.link)
    index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get(REF) == ref]
    (copy / "index.json").unlink()
    (copy / "index.json").write_bytes(canonical_json(index))
    return copy


def two_platform_layout(info: LayoutInfo, dst: Path) -> dict[str, str]:
    """A copy of ``info`` whose index.json names a nested index (linux/amd64 + linux/arm64)."""
    shutil.copytree(info.path, dst)
    arm_config = dict(info.config, architecture="arm64")
    config_desc = write_blob(
        dst, canonical_json(arm_config), "application/vnd.oci.image.config.v1+json"
    )
    arm_manifest = dict(info.manifest, config=config_desc)
    arm = write_blob(
        dst,
        canonical_json(arm_manifest),
        MANIFEST,
        platform={"architecture": "arm64", "os": "linux"},
    )
    amd = {
        "mediaType": MANIFEST,
        "digest": info.manifest_digest,
        "size": info.manifest_size,
        "platform": {"architecture": "amd64", "os": "linux"},
    }
    nested = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [amd, arm]}
    top = write_blob(dst, canonical_json(nested), INDEX, annotations={REF: "multi"})
    (dst / "index.json").write_bytes(
        canonical_json({"schemaVersion": 2, "mediaType": INDEX, "manifests": [top]})
    )
    return {"amd64": info.manifest_digest, "arm64": arm["digest"], "index": top["digest"]}


# -- PATH[:REF] ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("layout", ("layout", None)),
        ("layout:v1", ("layout", "v1")),
        ("/abs/layout:v1.2-rc", ("/abs/layout", "v1.2-rc")),
        ("./rel/layout", ("./rel/layout", None)),
        ("/a:b/layout", ("/a:b/layout", None)),  # the ':' is inside the path
        ("/a:b/layout:tag", ("/a:b/layout", "tag")),
    ],
)
def test_split_target(target: str, expected: tuple[str, str | None]) -> None:
    assert split_target(target) == expected


def test_split_target_rejects_empty_ref() -> None:
    with pytest.raises(InvalidReference):
        split_target("layout:")


# -- round trips --------------------------------------------------------------------------------


def test_round_trip_keeps_manifest_bytes(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = api.process(f"ocidir://{busybox_layout.path}:latest", f"ocidir://{out}:copy")
    assert str(result.manifest.digest) == busybox_layout.manifest_digest
    assert read_blob(out, busybox_layout.manifest_digest) == read_blob(
        busybox_layout.path, busybox_layout.manifest_digest
    )
    assert read_blob(out, busybox_layout.config_digest) == read_blob(
        busybox_layout.path, busybox_layout.config_digest
    )
    assert "\n" not in result.description and "copy" in result.description
    entry = index_of(out)["manifests"][0]
    assert entry["annotations"] == {REF: "copy"}
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert temp_files(out) == []
    judge(out, "copy", tmp_path)


def test_round_trip_multi_layer_parallel(edge_layout: LayoutInfo, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ctx = RunContext(jobs=4)
    result = api.process(f"ocidir://{edge_layout.path}", f"ocidir://{out}?ref=edge", ctx=ctx)
    assert str(result.manifest.digest) == edge_layout.manifest_digest
    assert [str(w.descriptor.digest) for w in result.layers] == edge_layout.layer_digests
    judge(out, "edge", tmp_path)
    # ... and back again from the copy, through a relative path
    os.chdir(tmp_path)
    again = api.process("ocidir://out:edge", "ocidir://again:edge2")
    assert str(again.manifest.digest) == edge_layout.manifest_digest
    judge(tmp_path / "again", "edge2", tmp_path)


def test_zstd_layout_round_trip(tmp_path: Path) -> None:
    require("zstd")
    src = images.build_oci_layout(
        tmp_path / "src", [[file("a.txt", "zstd layer\n")]], compression="zstd"
    )
    out = tmp_path / "out"
    result = api.process(f"ocidir://{src.path}:latest", f"ocidir://{out}:z")
    assert str(result.manifest.digest) == src.manifest_digest
    judge(out, "z", tmp_path, image_tool=False)  # oci-image-tool rejects zstd media types


def test_second_copy_skips_layers_it_holds(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = RunContext(stats=Stats())
    api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{out}:a", ctx=first)
    assert first.stats.bytes_read == sum(busybox_layout.layer_sizes)
    second = RunContext(stats=Stats())
    result = api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{out}:b", ctx=second)
    assert second.stats.layers_skipped == 1 and second.stats.bytes_read == 0
    assert [w.outcome for w in result.layers] == ["skipped"]
    assert refs_of(out) == ["a", "b"]
    judge(out, "b", tmp_path)


def test_same_ref_is_replaced_and_unnamed_is_deduplicated(
    busybox_layout: LayoutInfo, edge_layout: LayoutInfo, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{out}:v1")
    api.process(f"ocidir://{edge_layout.path}", f"ocidir://{out}:v1")
    entries = index_of(out)["manifests"]
    assert [e["digest"] for e in entries] == [edge_layout.manifest_digest]
    api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{out}")
    api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{out}")
    entries = index_of(out)["manifests"]
    assert len(entries) == 2 and "annotations" not in entries[1]
    assert entries[1]["digest"] == busybox_layout.manifest_digest


def test_sink_refuses_bad_destinations(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("not a layout")
    with pytest.raises(OutputError, match="not an OCI image layout"):
        api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{busy}:x")
    assert sorted(os.listdir(busy)) == ["precious.txt"]
    with pytest.raises(InvalidReference, match="grammar"):
        api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{tmp_path}/o?ref=bad ref")
    broken = tmp_path / "broken"
    shutil.copytree(busybox_layout.path, broken)
    (broken / "index.json").write_text("{not json")
    with pytest.raises(OutputError, match="cannot update"):
        api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{broken}:x")
    assert (broken / "index.json").read_text() == "{not json"
    with pytest.raises(InvalidOption, match="twice"):
        api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{tmp_path}/o:a?ref=b")


# -- choosing the image -------------------------------------------------------------------------


def test_nested_index_and_platform_selection(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    layout = tmp_path / "multi"
    digests = two_platform_layout(busybox_layout, layout)
    with api.open_source(f"ocidir://{layout}:multi") as image:
        assert str(image.manifest.digest if image.manifest else "") == digests["amd64"]
        assert image.index is not None and str(image.index.digest) == digests["index"]
        assert image.platform == Platform("linux", "amd64")
        assert image.sequential is False
    for wanted in ("linux/arm64", "linux/arm64/v8", "linux/aarch64"):
        with api.open_source(f"ocidir://{layout}:multi?platform={wanted}") as image:
            assert image.config.obj["architecture"] == "arm64"
            assert str(image.manifest.digest if image.manifest else "") == digests["arm64"]
    ctx = RunContext(platform=Platform("linux", "arm64"))
    with api.open_source(f"ocidir://{layout}", ctx) as image:  # the only entry; run platform
        assert image.config.obj["architecture"] == "arm64"
    with pytest.raises(PlatformNotFound) as err:
        api.process(f"ocidir://{layout}:multi?platform=linux/s390x", f"ocidir://{tmp_path}/o:x")
    assert (
        str(err.value)
        == "no image for platform linux/s390x; the index offers: linux/amd64, linux/arm64"
    )
    out = tmp_path / "arm"
    result = api.process(f"ocidir://{layout}:multi?platform=linux/arm64", f"ocidir://{out}:arm")
    assert str(result.manifest.digest) == digests["arm64"]
    judge(out, "arm", tmp_path, image_tool=False)  # (the hand-made arm64 config claims no binary)


def test_explicit_platform_is_checked_against_a_plain_manifest(busybox_layout: LayoutInfo) -> None:
    with pytest.raises(PlatformNotFound, match="linux/amd64"):
        with api.open_source(f"ocidir://{busybox_layout.path}?platform=linux/arm64"):
            pass


def test_index_json_listing_platforms_directly(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    layout = tmp_path / "flat"
    digests = two_platform_layout(busybox_layout, layout)
    nested = json.loads(read_blob(layout, digests["index"]))
    (layout / "index.json").write_bytes(canonical_json(nested))  # no ref names, two platforms
    with api.open_source(f"ocidir://{layout}?platform=linux/arm64") as image:
        assert str(image.manifest.digest if image.manifest else "") == digests["arm64"]


def test_nesting_depth_is_limited(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    layout = tmp_path / "deep"
    shutil.copytree(busybox_layout.path, layout)
    desc: dict[str, Any] = {
        "mediaType": MANIFEST,
        "digest": busybox_layout.manifest_digest,
        "size": busybox_layout.manifest_size,
        "platform": {"architecture": "amd64", "os": "linux"},
    }
    for _ in range(12):
        doc = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]}
        desc = write_blob(
            layout, canonical_json(doc), INDEX, platform={"architecture": "amd64", "os": "linux"}
        )
    (layout / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "manifests": [desc]}))
    with pytest.raises(LimitExceeded, match="nested deeper"):
        with api.open_source(f"ocidir://{layout}"):
            pass


def test_refs_index_and_names(
    busybox_layout: LayoutInfo, edge_layout: LayoutInfo, tmp_path: Path
) -> None:
    layout = tmp_path / "two"
    api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{layout}:busy")
    api.process(f"ocidir://{edge_layout.path}", f"ocidir://{layout}:edge")
    with pytest.raises(ImageNotFound) as err:
        with api.open_source(f"ocidir://{layout}:nope"):
            pass
    assert str(err.value) == f"no image 'nope' in {layout}; its refs are: busy, edge"
    with pytest.raises(ImageNotFound, match=r"holds 2 images; name one .*busy, edge"):
        with api.open_source(f"ocidir://{layout}"):
            pass
    with api.open_source(f"ocidir://{layout}?index=1") as image:
        assert image.tag == "edge" and image.name is None
    with pytest.raises(ImageNotFound, match="out of range"):
        with api.open_source(f"ocidir://{layout}?index=2"):
            pass
    with pytest.raises(InvalidOption):
        with api.open_source(f"ocidir://{layout}:busy?index=0"):
            pass
    # containerd's full names (docker save of Docker 25+, buildkit) are accepted too
    index = index_of(layout)
    index["manifests"][0]["annotations"]["io.containerd.image.name"] = (
        "docker.io/library/busybox:1.36"
    )
    (layout / "index.json").write_bytes(canonical_json(index))
    for ref in ("docker.io/library/busybox:1.36", "busybox:1.36"):
        with api.open_source(f"ocidir://{layout}:{ref}") as image:
            assert (image.name, image.tag) == ("docker.io/library/busybox", "1.36")
            assert (
                str(image.manifest.digest if image.manifest else "")
                == busybox_layout.manifest_digest
            )


def test_not_a_layout(tmp_path: Path, busybox_layout: LayoutInfo) -> None:
    with pytest.raises(ImageNotFound, match="no OCI image layout"):
        with api.open_source(f"ocidir://{tmp_path}/missing"):
            pass
    with pytest.raises(ImageNotFound, match="no oci-layout file"):
        with api.open_source(f"ocidir://{tmp_path}"):
            pass
    layout = tmp_path / "v2"
    shutil.copytree(busybox_layout.path, layout)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')
    with pytest.raises(UnsupportedFormat, match="2.0.0"):
        with api.open_source(f"ocidir://{layout}"):
            pass


# -- damaged layouts ----------------------------------------------------------------------------


def _damaged(info: LayoutInfo, dst: Path, digest: str, how: str) -> Path:
    shutil.copytree(info.path, dst)
    blob = dst / "blobs" / "sha256" / digest.split(":", 1)[1]
    data = bytearray(blob.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
    elif how == "truncate":
        blob.write_bytes(bytes(data[:-10]))
    else:
        blob.unlink()
    return dst


@pytest.mark.parametrize(
    ("how", "error"),
    [("flip", DigestMismatch), ("truncate", SizeMismatch), ("remove", BlobNotFound)],
)
def test_damaged_layer_leaves_no_index_entry(
    busybox_layout: LayoutInfo,
    edge_layout: LayoutInfo,
    tmp_path: Path,
    how: str,
    error: type[Exception],
) -> None:
    src = _damaged(busybox_layout, tmp_path / "src", busybox_layout.layer_digests[0], how)
    out = tmp_path / "out"
    api.process(f"ocidir://{edge_layout.path}", f"ocidir://{out}:good")  # shares no blob with src
    before = (out / "index.json").read_bytes()
    with pytest.raises(error) as err:
        api.process(f"ocidir://{src}", f"ocidir://{out}:bad")
    assert "\n" not in str(err.value) and busybox_layout.layer_digests[0] in str(err.value)
    assert (out / "index.json").read_bytes() == before
    assert temp_files(out) == []
    fresh = tmp_path / "fresh"
    with pytest.raises(error):
        api.process(f"ocidir://{src}", f"ocidir://{fresh}:bad")
    assert not (fresh / "index.json").exists() and temp_files(fresh) == []


def test_damaged_manifest_and_config(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    src = _damaged(busybox_layout, tmp_path / "m", busybox_layout.manifest_digest, "flip")
    with pytest.raises(IntegrityError, match="manifest"):
        with api.open_source(f"ocidir://{src}"):
            pass
    src = _damaged(busybox_layout, tmp_path / "c", busybox_layout.config_digest, "flip")
    with pytest.raises(DigestMismatch, match="image config"):
        with api.open_source(f"ocidir://{src}"):
            pass


# -- several writers at once --------------------------------------------------------------------

_WRITER = """
import sys, time
from occystrap import api
src, dst, ref, start = sys.argv[1:5]
time.sleep(max(0.0, float(start) - time.time()))  # all writers start together
for k in range(8):
    api.process(f"ocidir://{src}", f"ocidir://{dst}:{ref}-{k}")
"""


def test_concurrent_writers_all_land_in_index_json(tmp_path: Path) -> None:
    """Four processes, started together on a directory that does not exist yet, each write
    eight images (sharing a base layer) into it. Without the lock about a third of the
    index.json updates were lost, and creating the layout raced."""
    base = images.busybox_layers()[0]
    sources = [
        images.build_oci_layout(
            tmp_path / f"src{i}", [base, [file(f"img{i}.txt", f"image {i}\n" * 1000)]]
        )
        for i in range(4)
    ]
    assert len({s.layer_digests[0] for s in sources}) == 1  # they share the base layer
    out = tmp_path / "shared"
    start = str(time.time() + 2)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(s.path), str(out), f"img{i}", start],
            stderr=subprocess.PIPE,
        )
        for i, s in enumerate(sources)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    expected = sorted(f"img{i}-{k}" for i in range(4) for k in range(8))
    assert refs_of(out) == expected
    by_ref = {m["annotations"][REF]: m["digest"] for m in index_of(out)["manifests"]}
    for i, s in enumerate(sources):
        assert by_ref[f"img{i}-0"] == s.manifest_digest
    assert temp_files(out) == []
    judge(out, "img3-7", tmp_path)
