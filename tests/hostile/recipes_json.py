"""Recipes: broken JSON documents (OCI layouts and docker-save archives)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.ocilayout import REF_NAME

from .cases import ALL, DECOMPRESSING, NONE, case
from .craft import (
    Blob,
    Edit,
    canonical,
    docker_save,
    gzip_layer,
    sha256,
    write_layout,
)

TAR = "tar://{case}/image.tar"
BIGINT = b'{"schemaVersion":2,"n":' + b"9" * 5000 + b"}"
DEEP = b'{"schemaVersion":2,"a":' + b"[" * 3000 + b"]" * 3000 + b"}"
HUGE = 70 * 1024 * 1024  # over the 64 MiB JSON cap


def _raw(data: bytes) -> Edit:
    return lambda _obj: data


def _layout_case(
    id: str,
    cls: str,
    summary: str,
    error: str,
    *,
    refuse: frozenset[str] = ALL,
    early: bool = True,
    **edits: Any,
) -> None:
    case(id, cls, summary, refuse=refuse, error=error, early=early and refuse == ALL)(
        lambda root: _write(root, **edits)
    )


def _write(root: Path, layers: list[Blob] | None = None, **edits: Any) -> None:
    write_layout(root / "layout", layers or [gzip_layer()], **edits)


# -- JSON documents of an OCI layout ------------------------------------------------------

_BROKEN = (
    ("invalid-json", "is not JSON", "not valid JSON", b"{not json"),
    ("not-object", "is a JSON list", "not a JSON object|is not", b"[1,2]"),
    ("bigint", "holds a 5000-digit number", "not valid JSON", BIGINT),
    ("deep", "nests 3000 arrays", "not valid JSON", DEEP),
    ("not-utf8", "is not UTF-8", "not valid JSON", b'{"a":"\xff\xfe"}'),
    ("nan", "holds NaN", "not valid JSON", b'{"schemaVersion":2,"x":NaN}'),
)
for _where in ("index", "manifest", "config"):
    for _suffix, _summary, _error, _data in _BROKEN:
        _edits: dict[str, Any] = {_where: _raw(_data)}
        _layout_case(f"{_where}-{_suffix}", "json", f"{_where} {_summary}", _error, **_edits)

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
_layout_case(
    "manifest-huge",
    "json",
    "manifest descriptor of 70 MiB",
    "over the",
    manifest_desc={"size": HUGE},
)
_layout_case(
    "config-huge", "json", "config descriptor of 70 MiB", "over the", config_desc={"size": HUGE}
)


@case(
    "layout-no-marker",
    "json",
    "layout without the oci-layout file",
    error="not an OCI image layout",
    early=True,
)
def _(root: Path) -> None:
    _write(root)
    (root / "layout" / "oci-layout").unlink()


@case(
    "layout-bad-version",
    "json",
    "oci-layout says version 9.9.9",
    error="imageLayoutVersion",
    early=True,
)
def _(root: Path) -> None:
    _write(root)
    (root / "layout" / "oci-layout").write_bytes(b'{"imageLayoutVersion":"9.9.9"}')


@case(
    "index-huge",
    "json",
    "index.json of 70 MiB (sparse)",
    error="over the",
    generated=True,
    early=True,
)
def _(root: Path) -> None:
    _write(root)
    with open(root / "layout" / "index.json", "r+b") as f:
        f.truncate(HUGE)


# -- docker-save manifest.json and config -------------------------------------------------


def _save_case(
    id: str, summary: str, error: str, refuse: frozenset[str] = ALL, early: bool = True, **kw: Any
) -> None:
    def build(root: Path) -> None:
        docker_save(root / "image.tar", **kw)

    case(id, "json", summary, TAR, refuse=refuse, error=error, early=early and refuse == ALL)(build)


_save_case(
    "mj-invalid-json",
    "manifest.json is not JSON",
    "not valid JSON|manifest.json",
    manifest_json=_raw(b"[{"),
)
_save_case(
    "mj-not-list",
    "manifest.json is an object",
    "not a JSON list|manifest.json",
    manifest_json=_raw(b'{"Config":"x"}'),
)
_save_case(
    "mj-empty",
    "manifest.json is an empty list",
    "no images|manifest.json",
    manifest_json=_raw(b"[]"),
)
_save_case(
    "mj-bigint",
    "manifest.json holds a 5000-digit number",
    "not valid JSON",
    manifest_json=_raw(b"[" + b"7" * 5000 + b"]"),
)
_save_case(
    "mj-deep",
    "manifest.json nests 3000 lists",
    "not valid JSON",
    manifest_json=_raw(b"[" * 3000 + b"]" * 3000),
)
_save_case(
    "mj-layers-object",
    "Layers is an object",
    "Layers",
    manifest_json=lambda w: {"": [{**w[""][0], "Layers": {"a": 1}}]},
)
_save_case(
    "mj-layers-numbers",
    "Layers lists numbers",
    "Layers",
    manifest_json=lambda w: {"": [{**w[""][0], "Layers": [1, 2]}]},
)
_save_case("mj-config-missing", "Config names no member", "missing|not found|no member|does not",
           manifest_json=lambda w: {"": [{**w[""][0], "Config": "nope.json"}]})  # fmt: skip
_save_case("mj-layer-missing", "a Layers path names no member", "missing|not found|no member|does not",
           manifest_json=lambda w: {"": [{**w[""][0], "Layers": ["nope/layer.tar"]}]})  # fmt: skip
_save_case(
    "mj-repotags-object",
    "RepoTags is an object",
    "RepoTags",
    manifest_json=lambda w: {"": [{**w[""][0], "RepoTags": {"a": "b"}}]},
)
_save_case("mj-layer-count", "two Layers for one diff_id", "diff_id|layers",
           manifest_json=lambda w: {"": [{**w[""][0], "Layers": w[""][0]["Layers"] * 2}]})  # fmt: skip
_save_case(
    "archive-config-invalid-json",
    "the config member is not JSON",
    "not valid JSON",
    config=_raw(b"{{"),
)
_save_case("archive-diffid-mismatch", "layer.tar does not hash to the config's diff_id", "digest mismatch",
           diff_ids=[sha256(b"something else")], early=False)  # fmt: skip


@case(
    "mj-huge",
    "json",
    "manifest.json member of 70 MiB (sparse)",
    TAR,
    error="over the",
    generated=True,
    early=True,
)
def _(root: Path) -> None:
    from .craft import end, header

    with open(root / "image.tar", "wb") as f:
        f.write(header("manifest.json", size=HUGE))
        f.seek(HUGE, 1)
        f.write(end())


@case("manifest-lone-surrogate", "json", "manifest annotation with a lone UTF-16 surrogate escape (refused where it is re-encoded)",
      refuse=DECOMPRESSING - {"ocidir+filter"}, error="surrogate")  # fmt: skip
def _(root: Path) -> None:
    def edit(o: dict[str, Any]) -> bytes:
        doc = canonical({**o, "annotations": {"note": "SURROGATE"}})
        return doc.replace(b"SURROGATE", b"\\ud800")

    write_layout(root / "layout", manifest=edit)
