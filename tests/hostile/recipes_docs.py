"""Recipes: broken documents (JSON, descriptors, digests, media types, index nesting)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.ocilayout import INDEX_TYPE, LAYER_TYPES, MANIFEST_TYPE, REF_NAME

from .cases import ALL, DECOMPRESSING, NONE, case
from .craft import (
    Edit,
    BASE,
    Blob,
    canonical,
    docker_save,
    gzip_layer,
    index_blob,
    sha256,
    tar_of,
    write_blob,
    write_layout,
)

TAR = "tar://{case}/image.tar"
BIGINT = b'{"schemaVersion":2,"n":' + b"9" * 5000 + b"}"
DEEP = b'{"schemaVersion":2,"a":' + b"[" * 3000 + b"]" * 3000 + b"}"
HUGE = 70 * 1024 * 1024  # over the 64 MiB JSON cap


def _raw(data: bytes) -> Edit:
    return lambda _obj: data


def _layout_case(id: str, cls: str, summary: str, error: str, refuse: frozenset[str] = ALL, **edits: Any) -> None:
    case(id, cls, summary, refuse=refuse, error=error)(
        lambda root: _write(root, **edits)
    )


def _write(root: Path, layers: list[Blob] | None = None, **edits: Any) -> None:
    write_layout(root / "layout", layers or [gzip_layer()], **edits)


# -- JSON documents of an OCI layout ------------------------------------------------------

for _where in ("index", "manifest", "config"):
    _layout_case(f"{_where}-invalid-json", "json", f"{_where} is not JSON", "not valid JSON", **{_where: _raw(b"{not json")})
    _layout_case(f"{_where}-not-object", "json", f"{_where} is a JSON list", "not a JSON object|is not", **{_where: _raw(b"[1,2]")})
    _layout_case(f"{_where}-bigint", "json", f"{_where} holds a 5000-digit number", "not valid JSON", **{_where: _raw(BIGINT)})
    _layout_case(f"{_where}-deep", "json", f"{_where} nests 3000 arrays", "not valid JSON", **{_where: _raw(DEEP)})
    _layout_case(f"{_where}-not-utf8", "json", f"{_where} is not UTF-8", "not valid JSON", **{_where: _raw(b'{"a":"\xff\xfe"}')})

_layout_case("index-no-manifests", "json", "index.json without a manifests list", "no 'manifests' list",
             index=lambda o: {"schemaVersion": 2})  # fmt: skip
_layout_case("manifest-schema1", "json", "a Docker schema 1 manifest", "schema 1",
             manifest=lambda o: {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []})  # fmt: skip
_layout_case("manifest-no-layers", "json", "manifest without layers", "no 'layers' list",
             manifest=lambda o: {k: v for k, v in o.items() if k != "layers"})  # fmt: skip
_layout_case("manifest-layers-object", "json", "manifest layers is an object", "no 'layers' list",
             manifest=lambda o: {**o, "layers": {"a": 1}})  # fmt: skip
_layout_case("manifest-config-string", "json", "manifest config is a string", "not a JSON object",
             manifest=lambda o: {**o, "config": "sha256:00"})  # fmt: skip
_layout_case("manifest-subject-bad", "json", "manifest subject is a number", "not a JSON object",
             manifest=lambda o: {**o, "subject": 7})  # fmt: skip
_layout_case("manifest-annotations-list", "json", "manifest annotations is a list", "annotations",
             manifest=lambda o: {**o, "annotations": ["a"]})  # fmt: skip
_layout_case("config-rootfs-type", "json", "config rootfs.type is not 'layers'", "rootfs",
             config=lambda o: {**o, "rootfs": {"type": "zfs", "diff_ids": []}})  # fmt: skip
_layout_case("config-diffid-malformed", "json", "config diff_id is not a digest", "diff_id",
             config=lambda o: {**o, "rootfs": {"type": "layers", "diff_ids": ["nope"]}})  # fmt: skip
_layout_case("config-diffid-count", "json", "config lists two diff_ids for one layer", "diff_ids",
             config=lambda o: {**o, "rootfs": {"type": "layers", "diff_ids": o["rootfs"]["diff_ids"] * 2}})  # fmt: skip
_layout_case("index-lone-surrogate", "json", "annotation value with a lone UTF-16 surrogate", "annotation|UTF|surrogate|encode",
             refuse=NONE,
             index=lambda o: canonical({**o, "manifests": [{**o["manifests"][0], "annotations": {REF_NAME: "latest", "x": "SURROGATE"}}]}).replace(b"SURROGATE", b"\\ud800"))  # fmt: skip
_layout_case("manifest-huge", "json", "manifest descriptor of 70 MiB", "over the", manifest_desc={"size": HUGE})
_layout_case("config-huge", "json", "config descriptor of 70 MiB", "over the", config_desc={"size": HUGE})


@case("layout-no-marker", "json", "layout without the oci-layout file", error="not an OCI image layout")
def _(root: Path) -> None:
    _write(root)
    (root / "layout" / "oci-layout").unlink()


@case("layout-bad-version", "json", "oci-layout says version 9.9.9", error="imageLayoutVersion")
def _(root: Path) -> None:
    _write(root)
    (root / "layout" / "oci-layout").write_bytes(b'{"imageLayoutVersion":"9.9.9"}')


@case("index-huge", "json", "index.json of 70 MiB (sparse)", error="over the", generated=True)
def _(root: Path) -> None:
    _write(root)
    with open(root / "layout" / "index.json", "r+b") as f:
        f.truncate(HUGE)


# -- docker-save manifest.json and config -------------------------------------------------


def _save_case(id: str, summary: str, error: str, refuse: frozenset[str] = ALL, **kw: Any) -> None:
    def build(root: Path) -> None:
        docker_save(root / "image.tar", **kw)

    case(id, "json", summary, TAR, refuse=refuse, error=error)(build)


_save_case("mj-invalid-json", "manifest.json is not JSON", "not valid JSON|manifest.json", manifest_json=_raw(b"[{"))
_save_case("mj-not-list", "manifest.json is an object", "not a JSON list|manifest.json", manifest_json=_raw(b'{"Config":"x"}'))
_save_case("mj-empty", "manifest.json is an empty list", "no images|manifest.json", manifest_json=_raw(b"[]"))
_save_case("mj-bigint", "manifest.json holds a 5000-digit number", "not valid JSON", manifest_json=_raw(b"[" + b"7" * 5000 + b"]"))
_save_case("mj-deep", "manifest.json nests 3000 lists", "not valid JSON", manifest_json=_raw(b"[" * 3000 + b"]" * 3000))
_save_case("mj-layers-object", "Layers is an object", "Layers", manifest_json=lambda w: {"": [{**w[""][0], "Layers": {"a": 1}}]})
_save_case("mj-layers-numbers", "Layers lists numbers", "Layers", manifest_json=lambda w: {"": [{**w[""][0], "Layers": [1, 2]}]})
_save_case("mj-config-missing", "Config names no member", "missing|not found|no member|does not",
           manifest_json=lambda w: {"": [{**w[""][0], "Config": "nope.json"}]})  # fmt: skip
_save_case("mj-layer-missing", "a Layers path names no member", "missing|not found|no member|does not",
           manifest_json=lambda w: {"": [{**w[""][0], "Layers": ["nope/layer.tar"]}]})  # fmt: skip
_save_case("mj-repotags-object", "RepoTags is an object", "RepoTags", manifest_json=lambda w: {"": [{**w[""][0], "RepoTags": {"a": "b"}}]})
_save_case("mj-layer-count", "two Layers for one diff_id", "diff_id|layers",
           manifest_json=lambda w: {"": [{**w[""][0], "Layers": w[""][0]["Layers"] * 2}]})  # fmt: skip
_save_case("archive-config-invalid-json", "the config member is not JSON", "not valid JSON", config=_raw(b"{{"))
_save_case("archive-diffid-mismatch", "layer.tar does not hash to the config's diff_id", "digest mismatch",
           diff_ids=[sha256(b"something else")])  # fmt: skip


@case("mj-huge", "json", "manifest.json member of 70 MiB (sparse)", TAR, error="over the", generated=True)
def _(root: Path) -> None:
    from .craft import end, header

    with open(root / "image.tar", "wb") as f:
        f.write(header("manifest.json", size=HUGE))
        f.seek(HUGE, 1)
        f.write(end())


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
    _layout_case(_id, "descriptors", f"layer descriptor with {json.dumps(_fields)[:60]}", _error, layers=_layer_desc(**_fields))

_layout_case("config-size-lying", "descriptors", "config descriptor 1 byte short", "size mismatch", config_desc={"size": 1})
_layout_case("index-entry-size-lying", "descriptors", "index.json entry size 1 byte long", "size mismatch",
             index=lambda o: {**o, "manifests": [{**o["manifests"][0], "size": o["manifests"][0]["size"] + 1}]})  # fmt: skip
_layout_case("index-entry-platform-bad", "descriptors", "index.json entry platform is a string", "platform",
             index=lambda o: {**o, "manifests": [{**o["manifests"][0], "platform": "linux/amd64"}]})  # fmt: skip


@case("desc-digest-sha384", "descriptors", "layer digest uses sha384 (unsupported)", error="unsupported|sha384")
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


@case("layer-digest-mismatch", "digests", "layer blob changed after the manifest was made", error="digest mismatch|corrupt gzip")
def _(root: Path) -> None:
    layer = gzip_layer()
    _write(root, [layer])
    _tamper(root / "layout" / "blobs" / "sha256" / sha256(layer.data)[7:])


@case("config-digest-mismatch", "digests", "config blob changed after the manifest was made", error="digest mismatch")
def _(root: Path) -> None:
    written = write_layout(root / "layout")
    _tamper(written.blob(sha256(written.config)))


@case("manifest-digest-mismatch", "digests", "manifest blob changed after index.json was made", error="digest mismatch")
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
    return [Blob(data if data is not None else layer.data, media_type, layer.diff_id if data is None else sha256(data))]


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
        entry = {**index_blob(layout, [entry]), "platform": {"architecture": "amd64", "os": "linux"}}
    entry["annotations"] = {REF_NAME: "latest"}
    (layout / "index.json").write_bytes(canonical({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry]}))


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
    top = {"mediaType": INDEX_TYPE, "digest": f"sha256:{names[0]}", "size": size, "annotations": {REF_NAME: "latest"}}
    (layout / "index.json").write_bytes(canonical({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [top]}))


case("index-nested-9", "loops", "indexes nested 9 deep", error="nested deeper|deeper than")(lambda r: _nest(r, 9))
case("index-nested-7", "loops", "indexes nested 7 deep (allowed)", refuse=NONE)(lambda r: _nest(r, 7))
case("index-self-loop", "loops", "index blob naming itself", error="loop|digest mismatch|size mismatch")(lambda r: _loop(r, 1))
case("index-two-loop", "loops", "two index blobs naming each other", error="loop|digest mismatch|size mismatch")(lambda r: _loop(r, 2))
case("index-self-loop-all", "loops", "self-naming index with --all-platforms", error="loop|digest mismatch|size mismatch",
     args=("--all-platforms",))(lambda r: _loop(r, 1))  # fmt: skip
case("index-nested-9-all", "loops", "9-deep indexes with --all-platforms", error="nested|deeper|depth",
     args=("--all-platforms",))(lambda r: _nest(r, 9))  # fmt: skip
