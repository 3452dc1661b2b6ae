"""Fuzz the document parsers: manifests and indexes, configs, descriptors, ``manifest.json``.

Property: whatever the bytes (or JSON value), parsing, and then using the parsed object the
way the engine does, raises only OccystrapError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from occystrap.errors import OccystrapError
from occystrap.model.config import ImageConfig
from occystrap.model.descriptor import DEFAULT_PLATFORM, Descriptor
from occystrap.model.jsonfile import dump_canonical
from occystrap.model.manifest import Index, Manifest, parse
from occystrap.transports.dockerarchive.manifest_json import choose, parse_manifest_json

from .seeds import FUZZ, any_document, json_values, only_occystrap_errors, seed_bytes, seed_files

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "text/html",
    ]
)


def use_manifest(raw: bytes, content_type: str | None) -> None:
    doc = parse(raw, content_type, "fuzz manifest")
    _ = doc.digest, doc.descriptor()
    if isinstance(doc, Index):
        for desc in doc.manifests:
            dump_canonical(desc.to_json())
        try:
            doc.select(DEFAULT_PLATFORM)
        except OccystrapError:
            pass
        Index.build(doc.media_type, doc.manifests, doc.annotations)
    else:
        assert isinstance(doc, Manifest)
        Manifest.build(doc.media_type, doc.config, doc.layers, doc.annotations)


def use_config(raw: bytes) -> None:
    config = ImageConfig.parse(raw, "fuzz config")
    _ = config.diff_ids, config.history, config.layer_history(), config.created
    _ = config.platform, config.container_config, config.digest
    config.with_diff_ids(config.diff_ids)
    config.edit(lambda obj: obj.update({"created": "1970-01-01T00:00:00Z"}))


def use_descriptor(obj: Any) -> None:
    desc = Descriptor.from_json(obj, "fuzz descriptor")
    dump_canonical(desc.to_json())
    _ = desc.ref_name, str(desc.digest), desc.platform and str(desc.platform)


def use_manifest_json(raw: bytes) -> None:
    entries = parse_manifest_json(raw, "fuzz.tar")
    for entry in entries:
        _ = entry.label
    choose(entries, None, None, "fuzz.tar")
    if entries[0].repo_tags:
        choose(entries, entries[0].repo_tags[0], None, "fuzz.tar")


MANIFESTS = seed_bytes("manifest")
CONFIGS = seed_bytes("config")
DESCRIPTORS = seed_bytes("descriptor")
MANIFEST_JSONS = seed_bytes("manifest_json")


@pytest.mark.parametrize(
    ("kind", "path"),
    [(k, p) for k in ("manifest", "config", "descriptor", "manifest_json") for p in seed_files(k)],
    ids=lambda v: v.name if isinstance(v, Path) else v,
)
def test_seeds(kind: str, path: Path) -> None:
    raw = path.read_bytes()
    if kind == "manifest":
        only_occystrap_errors(lambda: use_manifest(raw, None))
    elif kind == "config":
        only_occystrap_errors(lambda: use_config(raw))
    elif kind == "descriptor":
        only_occystrap_errors(lambda: use_descriptor(json.loads(raw)))
    else:
        only_occystrap_errors(lambda: use_manifest_json(raw))


@FUZZ
@given(any_document(MANIFESTS), CONTENT_TYPES)
def test_manifest_parse(raw: bytes, content_type: str | None) -> None:
    only_occystrap_errors(lambda: use_manifest(raw, content_type))


@FUZZ
@given(any_document(CONFIGS))
def test_config_parse(raw: bytes) -> None:
    only_occystrap_errors(lambda: use_config(raw))


@FUZZ
@given(st.one_of(json_values, any_document(DESCRIPTORS).map(lambda b: _try_json(b))))
def test_descriptor_from_json(obj: Any) -> None:
    only_occystrap_errors(lambda: use_descriptor(obj))


@FUZZ
@given(any_document(MANIFEST_JSONS))
def test_docker_save_manifest_json(raw: bytes) -> None:
    only_occystrap_errors(lambda: use_manifest_json(raw))


def _try_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("latin-1")
