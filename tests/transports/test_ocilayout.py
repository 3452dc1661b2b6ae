"""ocidir:// source and sink, judged by skopeo, umoci, oci-image-tool and the OCI JSON schemas."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import images, schemas
from lab.ocilayout import LayoutInfo, canonical_json
from lab.registry import Registry
from lab.tarspec import directory, file
from lab.tools import OccystrapRunner, require, run, skopeo, umoci
from occystrap import api
from occystrap.copy import CopyResult
from occystrap.copy_index import IndexCopyResult
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


def copy(src: str, dst: str, ctx: RunContext | None = None) -> CopyResult:
    """One image copied (``api.process`` without ``--all-platforms``)."""
    result = api.process(src, dst, ctx=ctx)
    assert isinstance(result, CopyResult)
    return result


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
        if entry["mediaType"] == INDEX:
            continue  # another ref holding an index (judge_index checks those)
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
    result = copy(f"ocidir://{busybox_layout.path}:latest", f"ocidir://{out}:copy")
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
    result = copy(f"ocidir://{edge_layout.path}", f"ocidir://{out}?ref=edge", ctx=ctx)
    assert str(result.manifest.digest) == edge_layout.manifest_digest
    assert [str(w.descriptor.digest) for w in result.layers] == edge_layout.layer_digests
    judge(out, "edge", tmp_path)
    # ... and back again from the copy, through a relative path
    os.chdir(tmp_path)
    again = copy("ocidir://out:edge", "ocidir://again:edge2")
    assert str(again.manifest.digest) == edge_layout.manifest_digest
    judge(tmp_path / "again", "edge2", tmp_path)


def test_zstd_layout_round_trip(tmp_path: Path) -> None:
    require("zstd")
    src = images.build_oci_layout(
        tmp_path / "src", [[file("a.txt", "zstd layer\n")]], compression="zstd"
    )
    out = tmp_path / "out"
    result = copy(f"ocidir://{src.path}:latest", f"ocidir://{out}:z")
    assert str(result.manifest.digest) == src.manifest_digest
    judge(out, "z", tmp_path, image_tool=False)  # oci-image-tool rejects zstd media types


def test_second_copy_skips_layers_it_holds(busybox_layout: LayoutInfo, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = RunContext(stats=Stats())
    api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{out}:a", ctx=first)
    assert first.stats.bytes_read == sum(busybox_layout.layer_sizes)
    second = RunContext(stats=Stats())
    result = copy(f"ocidir://{busybox_layout.path}", f"ocidir://{out}:b", ctx=second)
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


def test_sink_takes_a_layout_another_writer_made_between_its_looks(
    busybox_layout: LayoutInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A racing writer renames oci-layout into place after this one asked whether the
    directory is a layout and before it lists it: that is a layout, not a foreign dir."""
    from occystrap.transports.ocilayout import sink

    out = tmp_path / "out"
    (out / "blobs" / "sha256").mkdir(parents=True)
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    looks: list[str] = []

    def late(path: str) -> bool:  # the first look happened before the rename
        looks.append(path)
        return len(looks) > 1

    monkeypatch.setattr(sink, "is_layout", late)
    api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{out}:x")
    assert len(looks) > 1 and refs_of(out) == ["x"]


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
    result = copy(f"ocidir://{layout}:multi?platform=linux/arm64", f"ocidir://{out}:arm")
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


# -- --all-platforms: indexes -----------------------------------------------------------------

PLATFORMS: dict[str, dict[str, str]] = {
    "linux/amd64": {"architecture": "amd64", "os": "linux"},
    "linux/arm64": {"architecture": "arm64", "os": "linux"},
    "linux/arm/v7": {"architecture": "arm", "os": "linux", "variant": "v7"},
}
ATTESTATION = {
    "vnd.docker.reference.type": "attestation-manifest",
}


@dataclass(frozen=True)
class MultiLayout:
    """A layout whose index.json names one image index (ref ``multi``)."""

    path: Path
    top: dict[str, Any]  # the index.json entry: the top index's descriptor
    children: dict[str, str]  # platform -> image manifest digest
    attestation: str | None  # the BuildKit-style attestation manifest's digest
    nested: str | None  # the nested index's digest (``nest=True``)

    def blobs(self) -> set[str]:
        return {p.name for p in (self.path / "blobs" / "sha256").iterdir()}


def multi_platform_layout(
    root: Path,
    platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64", "linux/arm/v7"),
    *,
    attestation: bool = True,
    nest: bool = False,
) -> MultiLayout:
    """One real image per platform (own layers), an attestation manifest (platform
    unknown/unknown, an in-toto layer) and an index listing them, pretty-printed on purpose
    so a copy that re-serialises it changes its digest. ``nest``: the images sit in an index
    that the top index lists (beside the attestation)."""
    images_: list[dict[str, Any]] = []
    children: dict[str, str] = {}
    for i, name in enumerate(platforms):
        layers = [
            [file("etc/arch", f"{name}\n"), directory("tmp")],
            [file(f"data/{i}.bin", "x" * (999 + i))],
        ]
        info = images.build_oci_layout(
            root, layers, config_overrides=PLATFORMS[name], tag=f"part-{i}"
        )
        children[name] = info.manifest_digest
        images_.append({"mediaType": MANIFEST, "digest": info.manifest_digest, "size": info.manifest_size, "platform": PLATFORMS[name]})  # fmt: skip
    others: list[dict[str, Any]] = []
    att_digest = None
    if attestation:
        statement = write_blob(root, b'{"_type":"https://in-toto.io/Statement/v0.1"}', "application/vnd.in-toto+json", annotations={"in-toto.io/predicate-type": "https://spdx.dev/Document"})  # fmt: skip
        config = write_blob(root, canonical_json({"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers", "diff_ids": [statement["digest"]]}}), "application/vnd.oci.image.config.v1+json")  # fmt: skip
        manifest = canonical_json({"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": [statement]})  # fmt: skip
        att = write_blob(root, manifest, MANIFEST, platform={"architecture": "unknown", "os": "unknown"}, annotations={**ATTESTATION, "vnd.docker.reference.digest": next(iter(children.values()))})  # fmt: skip
        att_digest = att["digest"]
        others.append(att)
    nested = None
    if nest:
        sub = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": images_}, indent=2)
        nested_desc = write_blob(root, sub.encode(), INDEX)
        nested = nested_desc["digest"]
        images_ = [nested_desc]
    doc = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [*images_, *others]}
    top = write_blob(root, json.dumps(doc, indent=3).encode(), INDEX, annotations={REF: "multi"})
    (root / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "mediaType": INDEX, "manifests": [top]}))  # fmt: skip
    return MultiLayout(root, top, children, att_digest, nested)


def all_platforms(src: str, dst: str, *filters: str) -> IndexCopyResult:
    result = api.process(src, dst, list(filters), RunContext(all_platforms=True, jobs=4))
    assert isinstance(result, IndexCopyResult)
    return result


def walk(root: Path, digest: str, seen: dict[str, Any]) -> None:
    """Every manifest and index reachable from ``digest``, parsed, into ``seen``."""
    doc = json.loads(read_blob(root, digest))
    seen[digest] = doc
    for entry in doc.get("manifests", []):
        walk(root, entry["digest"], seen)


def judge_index(root: Path, ref: str, tmp: Path, *, image_tool: bool = True) -> str:
    """The layout holds ``ref`` as an image index whose every image is complete: schemas,
    blob names, oci-image-tool, umoci's listing, skopeo (``copy --all`` verifies every
    digest). Returns the index digest."""
    schemas.validate("layout", root / "oci-layout")
    index = index_of(root)
    schemas.validate("index", index)
    [entry] = [m for m in index["manifests"] if m.get("annotations", {}).get(REF) == ref]
    assert entry["mediaType"] == INDEX and "platform" not in entry
    docs: dict[str, Any] = {}
    walk(root, entry["digest"], docs)
    for digest, doc in docs.items():
        if doc["mediaType"] == INDEX:
            schemas.validate("index", doc)
            for child in doc["manifests"]:
                assert len(read_blob(root, child["digest"])) == child["size"]
        else:
            schemas.validate("manifest", doc)
            schemas.validate("config", read_blob(root, doc["config"]["digest"]))
            for layer in doc["layers"]:
                assert len(read_blob(root, layer["digest"])) == layer["size"], digest
    for blob in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, blob
    if image_tool:  # it walks the index (warning that it does not know its media type)
        run([require("oci-image-tool"), "validate", "--type", "image", "--ref", f"name={ref}", str(alone(root, ref, tmp))])  # fmt: skip
    assert ref in umoci("ls", "--layout", str(root)).stdout.split()  # (umoci stat: "ambiguous")
    raw = skopeo("inspect", "--raw", f"oci:{root}:{ref}").stdout.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == entry["digest"]
    skopeo("copy", "--all", f"oci:{root}:{ref}", f"oci:{tmp / f'skopeo-all-{ref}'}:{ref}")
    return str(entry["digest"])


def test_all_platforms_ocidir_to_ocidir_keeps_the_index_digest(
    busybox_layout: LayoutInfo, tmp_path: Path
) -> None:
    src = multi_platform_layout(tmp_path / "src")
    out = tmp_path / "out"
    api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{out}:other")
    api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{out}:multi")  # replaced below
    result = all_platforms(f"ocidir://{src.path}:multi", f"ocidir://{out}:multi")
    assert str(result.index.digest) == src.top["digest"]
    assert f"({src.top['digest']}, index of 4 manifests)" in result.description
    assert sorted(str(r.manifest.digest) for r in result.images) == sorted(
        [*src.children.values(), str(src.attestation)]
    )
    entries = index_of(out)["manifests"]
    assert entries[0]["annotations"] == {REF: "other"}
    assert entries[1] == src.top  # the index, not its images, under the ref name
    assert len(entries) == 2
    assert read_blob(out, src.top["digest"]) == read_blob(src.path, src.top["digest"])
    assert src.blobs() <= {p.name for p in (out / "blobs" / "sha256").iterdir()}
    assert temp_files(out) == []
    # oci-image-tool 1.0.0-rc1 refuses the in-toto layer type of the attestation
    assert judge_index(out, "multi", tmp_path, image_tool=False) == src.top["digest"]
    judge(out, "other", tmp_path)  # the plain image beside it is untouched
    # skopeo copies it on, keeping the digest, and our copy of skopeo's copy agrees
    skopeo("copy", "--all", f"oci:{out}:multi", f"oci:{tmp_path / 'sk'}:multi")
    assert index_of(tmp_path / "sk")["manifests"][0]["digest"] == src.top["digest"]
    again = all_platforms(f"ocidir://{tmp_path / 'sk'}:multi", f"ocidir://{tmp_path / 'again'}")
    assert str(again.index.digest) == src.top["digest"]
    # every platform is readable from the copy
    for name, digest in src.children.items():
        with api.open_source(f"ocidir://{out}:multi?platform={name}") as image:
            assert image.manifest is not None and str(image.manifest.digest) == digest


def test_all_platforms_without_linux_amd64(tmp_path: Path) -> None:
    src = multi_platform_layout(
        tmp_path / "src", ("linux/arm64", "linux/arm/v7"), attestation=False
    )
    with pytest.raises(PlatformNotFound) as err:
        api.process(f"ocidir://{src.path}:multi", f"ocidir://{tmp_path / 'one'}")
    assert str(err.value).endswith("the index offers: linux/arm64, linux/arm/v7")
    assert not (tmp_path / "one" / "index.json").exists()
    ctx = RunContext(all_platforms=True)
    with api.open_source(f"ocidir://{src.path}:multi", ctx) as image:  # the first entry
        assert image.manifest is not None
        assert str(image.manifest.digest) == src.children["linux/arm64"]
        assert image.index is not None and str(image.index.digest) == src.top["digest"]
    out = tmp_path / "out"
    result = all_platforms(f"ocidir://{src.path}:multi", f"ocidir://{out}:multi")
    assert len(result.images) == 2
    assert judge_index(out, "multi", tmp_path) == src.top["digest"]


def test_all_platforms_nested_index_keeps_both_digests(tmp_path: Path) -> None:
    src = multi_platform_layout(tmp_path / "src", nest=True, attestation=False)
    assert src.nested is not None
    with api.open_source(f"ocidir://{src.path}:multi") as image:  # Image.index: the named one
        assert image.index is not None and str(image.index.digest) == src.top["digest"]
        assert image.manifest is not None
        assert str(image.manifest.digest) == src.children["linux/amd64"]
        assert image.platform == Platform("linux", "amd64")
    out = tmp_path / "out"
    result = all_platforms(f"ocidir://{src.path}:multi", f"ocidir://{out}:multi")
    assert str(result.index.digest) == src.top["digest"] and len(result.images) == 3
    assert [m["digest"] for m in index_of(out)["manifests"]] == [src.top["digest"]]
    assert read_blob(out, src.nested) == read_blob(src.path, src.nested)  # a blob, not listed
    assert src.blobs() == {p.name for p in (out / "blobs" / "sha256").iterdir()}
    # skopeo and oci-image-tool refuse nested indexes; the schemas and we still judge
    schemas.validate("index", index_of(out))
    docs: dict[str, Any] = {}
    walk(out, src.top["digest"], docs)
    assert set(docs) == {src.top["digest"], src.nested, *src.children.values()}
    for doc in docs.values():
        schemas.validate("index" if doc["mediaType"] == INDEX else "manifest", doc)
    for name, digest in src.children.items():
        with api.open_source(f"ocidir://{out}:multi?platform={name}") as image:
            assert image.manifest is not None and str(image.manifest.digest) == digest


def test_open_manifest_opens_every_entry(tmp_path: Path) -> None:
    src = multi_platform_layout(tmp_path / "src", nest=True)
    with api.open_source(f"ocidir://{src.path}:multi") as image:
        assert image.index is not None and image.open_manifest is not None
        nested, att = image.index.manifests
        with image.open_manifest(att) as child:  # no usable platform: still an image
            assert child.manifest is not None and str(child.manifest.digest) == src.attestation
            assert child.platform == Platform("unknown", "unknown")
            assert child.index is None and child.tag == "multi"
            assert child.annotations["vnd.docker.reference.type"] == "attestation-manifest"
            [layer] = child.layers
            with layer.open() as f:
                assert f.read().startswith(b'{"_type"')
        with image.open_manifest(nested) as child:  # an index: its image for the platform
            assert child.index is not None and str(child.index.digest) == src.nested
            assert child.open_manifest is not None
            for entry in child.index.manifests:
                assert entry.platform is not None
                with child.open_manifest(entry) as grandchild:
                    assert grandchild.manifest is not None
                    assert grandchild.manifest.digest == entry.digest
                    assert grandchild.platform == entry.platform
                    assert grandchild.config.obj["architecture"] == entry.platform.architecture
    # a child that does not match its descriptor is refused
    (src.path / "blobs" / "sha256" / str(src.attestation).split(":")[1]).write_bytes(b"{}")
    with api.open_source(f"ocidir://{src.path}:multi") as image:
        assert image.index is not None and image.open_manifest is not None
        with pytest.raises(SizeMismatch, match="manifest"):
            with image.open_manifest(image.index.manifests[1]):
                pass


@pytest.mark.parametrize("how", ["flip", "remove"])
def test_all_platforms_failure_leaves_index_json_alone(
    busybox_layout: LayoutInfo, tmp_path: Path, how: str
) -> None:
    src = multi_platform_layout(tmp_path / "src")
    error: type[Exception]
    if how == "flip":  # a layer of the last platform
        manifest = json.loads(read_blob(src.path, src.children["linux/arm/v7"]))
        victim, error = manifest["layers"][-1]["digest"], DigestMismatch
    else:  # the attestation manifest
        victim, error = str(src.attestation), BlobNotFound
    _damaged(LayoutInfo(src.path, "", "", 0, "", [], [], [], [], {}, {}), tmp_path / "bad", victim, how)  # fmt: skip
    out = tmp_path / "out"
    api.process(f"ocidir://{busybox_layout.path}", f"ocidir://{out}:multi")
    before = (out / "index.json").read_bytes()
    with pytest.raises(error, match=victim):
        all_platforms(f"ocidir://{tmp_path / 'bad'}:multi", f"ocidir://{out}:multi")
    assert (out / "index.json").read_bytes() == before and temp_files(out) == []
    fresh = tmp_path / "fresh"
    with pytest.raises(error):
        all_platforms(f"ocidir://{tmp_path / 'bad'}:multi", f"ocidir://{fresh}:multi")
    assert not (fresh / "index.json").exists() and temp_files(fresh) == []


def test_all_platforms_with_a_filter_rebuilds_the_index(tmp_path: Path) -> None:
    src = multi_platform_layout(tmp_path / "src", attestation=False)
    out = tmp_path / "out"
    result = all_platforms(
        f"ocidir://{src.path}:multi", f"ocidir://{out}:multi", "exclude:pattern=data/*"
    )
    assert str(result.index.digest) != src.top["digest"]
    entries = json.loads(read_blob(out, str(result.index.digest)))["manifests"]
    assert [e["platform"] for e in entries] == list(PLATFORMS.values())
    assert not {e["digest"] for e in entries} & set(src.children.values())
    assert judge_index(out, "multi", tmp_path) == str(result.index.digest)
    for name in PLATFORMS:
        with api.open_source(f"ocidir://{out}:multi?platform={name}") as image:
            assert image.config.obj["architecture"] == PLATFORMS[name]["architecture"]


def test_all_platforms_round_trip_through_a_registry(
    run_occystrap: OccystrapRunner, registry_plain: Registry, tmp_path: Path
) -> None:
    """ocidir -> registry -> ocidir with ``--all-platforms`` through the CLI: every manifest
    and the index keep their digests, and the layout that comes back holds the same blobs."""
    src = multi_platform_layout(tmp_path / "src")
    reg = registry_plain
    home = tmp_path / "home"
    env = {"HOME": str(home), "DOCKER_CONFIG": str(home / "docker"), "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache"), "REGISTRY_AUTH_FILE": str(home / "auth.json")}  # fmt: skip
    dest = f"registry://{reg.host}/ocidir/multi:v1"
    for args in (
        (f"ocidir://{src.path}:multi", dest),
        (dest, f"ocidir://{tmp_path / 'back'}:multi"),
    ):
        done = run_occystrap("--insecure", "--all-platforms", "process", *args, env=env)
        assert done.returncode == 0, done.stderr.decode()
        assert "index of 4 manifests" in done.stderr.decode()
    raw = skopeo("inspect", "--raw", *reg.skopeo_args("plain"), reg.ref("ocidir/multi", "v1"))
    assert "sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest() == src.top["digest"]
    back = tmp_path / "back"
    assert index_of(back)["manifests"] == [src.top]
    assert src.blobs() == {p.name for p in (back / "blobs" / "sha256").iterdir()}
    assert judge_index(back, "multi", tmp_path, image_tool=False) == src.top["digest"]
