"""Recipes: broken descriptors, mismatched digests, media types, index nesting and loops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.ocilayout import INDEX_TYPE, LAYER_TYPES, MANIFEST_TYPE, REF_NAME

from .cases import DECOMPRESSING, NONE, case
from .craft import Blob, canonical, gzip_layer, index_blob, sha256, write_layout
from .recipes_json import _layout_case, _write

# -- descriptors ---------------------------------------------------------------------------


def _layer_desc(**fields: Any) -> list[Blob]:
    layer = gzip_layer()
    return [Blob(layer.data, layer.media_type, layer.diff_id, fields)]


_GZ_SIZE = len(gzip_layer().data)
for _id, _fields, _error in (
    ("desc-size-negative", {"size": -1}, "bad size"),
    ("desc-size-smaller", {"size": _GZ_SIZE - 10}, "size mismatch"),
    ("desc-size-larger", {"size": _GZ_SIZE + 10}, "size mismatch"),
    ("desc-size-string", {"size": str(_GZ_SIZE)}, "bad size"),
    ("desc-size-float", {"size": _GZ_SIZE + 0.5}, "bad size"),
    ("desc-size-bool", {"size": True}, "bad size"),
    ("desc-size-huge", {"size": 2**70}, "size mismatch|bad size|over"),
    ("desc-digest-missing", {"digest": None}, "malformed digest"),
    ("desc-digest-malformed", {"digest": "sha256:xyz"}, "malformed"),
    ("desc-digest-uppercase", {"digest": sha256(gzip_layer().data).upper()}, "malformed"),
    ("desc-digest-traversal", {"digest": "sha256:../../../../etc/hostname"}, "malformed"),
    ("desc-digest-number", {"digest": 12345}, "malformed"),
    ("desc-mediatype-missing", {"mediaType": None}, "no mediaType"),
    ("desc-annotations-list", {"annotations": ["a"]}, "annotations"),
    ("desc-annotations-numbers", {"annotations": {"a": 1}}, "annotations"),
):
    _layout_case(_id, "descriptors", f"layer descriptor with {json.dumps(_fields)[:60]}", _error,
                 early="size" not in _fields or not isinstance(_fields["size"], int) or _fields["size"] < 0,
                 layers=_layer_desc(**_fields))  # fmt: skip

_layout_case(
    "config-size-lying",
    "descriptors",
    "config descriptor 1 byte short",
    "size mismatch",
    config_desc={"size": 1},
)
_layout_case("index-entry-size-lying", "descriptors", "index.json entry size 1 byte long", "size mismatch",
             index=lambda o: {**o, "manifests": [{**o["manifests"][0], "size": o["manifests"][0]["size"] + 1}]})  # fmt: skip
_layout_case("index-entry-platform-bad", "descriptors", "index.json entry platform is a string", "platform",
             index=lambda o: {**o, "manifests": [{**o["manifests"][0], "platform": "linux/amd64"}]})  # fmt: skip


@case(
    "desc-digest-sha384",
    "descriptors",
    "layer digest uses sha384 (unsupported)",
    error="unsupported|sha384",
)
def _(root: Path) -> None:
    import hashlib

    layer = gzip_layer()
    hexd = hashlib.sha384(layer.data).hexdigest()
    _write(root, [Blob(layer.data, layer.media_type, layer.diff_id, {"digest": "sha384:" + hexd})])
    blob = root / "layout" / "blobs" / "sha384" / hexd
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(layer.data)


# -- digests that do not match -------------------------------------------------------------


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@case(
    "layer-digest-mismatch",
    "digests",
    "layer blob changed after the manifest was made",
    error="digest mismatch|corrupt gzip",
)
def _(root: Path) -> None:
    layer = gzip_layer()
    _write(root, [layer])
    _tamper(root / "layout" / "blobs" / "sha256" / sha256(layer.data)[7:])


@case(
    "config-digest-mismatch",
    "digests",
    "config blob changed after the manifest was made",
    error="digest mismatch",
    early=True,
)
def _(root: Path) -> None:
    written = write_layout(root / "layout")
    _tamper(written.blob(sha256(written.config)))


@case(
    "manifest-digest-mismatch",
    "digests",
    "manifest blob changed after index.json was made",
    error="digest mismatch",
    early=True,
)
def _(root: Path) -> None:
    written = write_layout(root / "layout", manifest=lambda o: {**o, "annotations": {"pad": "x"}})
    path = written.blob(sha256(written.manifest))
    path.write_bytes(path.read_bytes().replace(b'"pad":"x"', b'"pad":"y"'))


@case("layer-blob-missing", "digests", "layer blob absent from the layout", error="missing")
def _(root: Path) -> None:
    layer = gzip_layer()
    _write(root, [layer])
    (root / "layout" / "blobs" / "sha256" / sha256(layer.data)[7:]).unlink()


_layout_case("diffid-mismatch", "digests", "config diff_id is not the layer's", "digest mismatch|diff_id",
             refuse=DECOMPRESSING, config=lambda o: {**o, "rootfs": {"type": "layers", "diff_ids": [sha256(b"other")]}})  # fmt: skip


# -- media types -----------------------------------------------------------------------------


def _typed(media_type: str, data: bytes | None = None) -> list[Blob]:
    layer = gzip_layer()
    return [
        Blob(
            data if data is not None else layer.data,
            media_type,
            layer.diff_id if data is None else sha256(data),
        )
    ]


_layout_case("unknown-layer-type", "media-types", "gzip tar layer under an unknown media type (carried)", "",
             refuse=NONE, layers=_typed("application/vnd.example.layer.v1+weird"))  # fmt: skip
_layout_case("artifact-layer", "media-types", "non-tar blob of an artifact (carried as a blob)", "tar",
             refuse=DECOMPRESSING, layers=_typed("application/vnd.example.data", b"just some bytes\n"))  # fmt: skip
_layout_case("unknown-config-type", "media-types", "artifact config media type (carried)", "",
             refuse=NONE, manifest=lambda o: {**o, "config": {**o["config"], "mediaType": "application/vnd.example.config+json"}})  # fmt: skip
_layout_case("nondistributable-layer", "media-types", "non-distributable layer whose blob is present", "",
             refuse=NONE, layers=_typed("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"))  # fmt: skip
_layout_case("unknown-fields", "media-types", "unknown fields in every document and descriptor (kept)", "",
             refuse=NONE, layers=[Blob(gzip_layer().data, LAYER_TYPES["gzip"], gzip_layer().diff_id, {"x-extra": {"a": [1]}})],
             manifest=lambda o: {**o, "x-extra": True}, config=lambda o: {**o, "x-extra": 1},
             index=lambda o: {**o, "x-extra": "y"})  # fmt: skip
_layout_case("unknown-manifest-type", "media-types", "index.json entry with an unknown media type", "unknown media type|says it is|served as",
             index=lambda o: {**o, "manifests": [{**o["manifests"][0], "mediaType": "application/vnd.example.thing+json"}]})  # fmt: skip


# -- index nesting and loops -------------------------------------------------------------------


def _nest(root: Path, depth: int) -> None:
    layout = root / "layout"
    written = write_layout(layout)
    entry: dict[str, Any] = {"mediaType": MANIFEST_TYPE, "digest": sha256(written.manifest), "size": len(written.manifest),
                             "platform": {"architecture": "amd64", "os": "linux"}}  # fmt: skip
    for _ in range(depth):
        entry = {
            **index_blob(layout, [entry]),
            "platform": {"architecture": "amd64", "os": "linux"},
        }
    entry["annotations"] = {REF_NAME: "latest"}
    (layout / "index.json").write_bytes(
        canonical({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry]})
    )


def _loop(root: Path, length: int) -> None:
    """Index blobs stored under digests that name each other in a cycle (the names lie)."""
    layout = root / "layout"
    write_layout(layout)
    names = [f"{i:064x}" for i in range(1, length + 1)]
    for i, name in enumerate(names):
        nxt = names[(i + 1) % length]
        doc = canonical({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [
            {"mediaType": INDEX_TYPE, "digest": f"sha256:{nxt}", "size": 0, "platform": {"architecture": "amd64", "os": "linux"}}]})  # fmt: skip
        (layout / "blobs" / "sha256" / name).write_bytes(doc)
    size = len((layout / "blobs" / "sha256" / names[0]).read_bytes())
    top = {
        "mediaType": INDEX_TYPE,
        "digest": f"sha256:{names[0]}",
        "size": size,
        "annotations": {REF_NAME: "latest"},
    }
    (layout / "index.json").write_bytes(
        canonical({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [top]})
    )


case(
    "index-nested-9",
    "loops",
    "indexes nested 9 deep",
    error="nested deeper|deeper than",
    early=True,
)(lambda r: _nest(r, 9))
case("index-nested-7", "loops", "indexes nested 7 deep (allowed)", refuse=NONE)(
    lambda r: _nest(r, 7)
)
case(
    "index-self-loop",
    "loops",
    "index blob naming itself",
    error="loop|digest mismatch|size mismatch",
    early=True,
)(lambda r: _loop(r, 1))
case(
    "index-two-loop",
    "loops",
    "two index blobs naming each other",
    error="loop|digest mismatch|size mismatch",
    early=True,
)(lambda r: _loop(r, 2))
case("index-self-loop-all", "loops", "self-naming index with --all-platforms", error="loop|digest mismatch|size mismatch",
     args=("--all-platforms",))(lambda r: _loop(r, 1))  # fmt: skip
case("index-nested-9-all", "loops", "9-deep indexes with --all-platforms", error="nested|deeper|depth",
     args=("--all-platforms",))(lambda r: _nest(r, 9))  # fmt: skip
