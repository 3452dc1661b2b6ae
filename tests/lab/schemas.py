"""Validate JSON documents against the OCI schemas vendored in ``tests/specs/``.

``validate(kind, doc)`` with kind ``manifest``, ``index``, ``config``, ``layout`` (the
``oci-layout`` file) or ``runtime`` (a bundle's ``config.json``) raises AssertionError listing
every schema error. Uses ``jsonschema.Draft4Validator`` and a ``referencing.Registry`` so the
schemas' relative ``$ref``s resolve to the local files, never to the network.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

Kind = Literal["manifest", "index", "config", "layout", "runtime"]

SPECS = Path(__file__).resolve().parent.parent / "specs"
IMAGE_BASES = ("https://opencontainers.org/schema/image/", "https://opencontainers.org/schema/")
RUNTIME_BASE = "https://opencontainers.org/schema/runtime/"

_MAIN: dict[Kind, tuple[str, str]] = {
    "manifest": ("image-spec", "image-manifest-schema.json"),
    "index": ("image-spec", "image-index-schema.json"),
    "config": ("image-spec", "config-schema.json"),
    "layout": ("image-spec", "image-layout-schema.json"),
    "runtime": ("runtime-spec", "config-schema.json"),
}


def _is_schema_file(spec: str, name: str) -> bool:
    """runtime-spec/ also holds example documents, which are not schemas."""
    if spec == "image-spec":
        return True
    return name.startswith(("config-", "defs", "features-")) or name.endswith("-schema.json")


@functools.cache
def _registry(spec: str) -> Registry[Any]:
    """Every schema of ``spec`` under each base URI + file name, and under its own ``id``."""
    registry: Registry[Any] = Registry()
    bases = IMAGE_BASES if spec == "image-spec" else (RUNTIME_BASE,)
    for path in sorted((SPECS / spec).glob("*.json")):
        if not _is_schema_file(spec, path.name):
            continue
        contents = json.loads(path.read_text())
        resource: Resource[Any] = DRAFT4.create_resource(contents)
        for base in bases:
            registry = registry.with_resource(base + path.name, resource)
        own_id = contents.get("id") if isinstance(contents, dict) else None
        if isinstance(own_id, str) and own_id:
            registry = registry.with_resource(own_id, resource)
    return registry.crawl()


@functools.cache
def _validator(kind: Kind) -> Any:
    spec, name = _MAIN[kind]
    schema = json.loads((SPECS / spec / name).read_text())
    base = IMAGE_BASES[0] if spec == "image-spec" else RUNTIME_BASE
    # The main schema's own id is extension-less ("…/image/manifest"); resolve relative refs
    # against base + file name, which is also where every sibling file is registered.
    schema["id"] = base + name
    return jsonschema.Draft4Validator(schema, registry=_registry(spec))


def _load(doc: object) -> Any:
    if isinstance(doc, (bytes, bytearray, str)):
        return json.loads(doc)
    if isinstance(doc, os.PathLike):
        return json.loads(Path(doc).read_bytes())
    return doc


def errors(kind: Kind, doc: object) -> list[str]:
    """Every schema error of ``doc`` as ``path: message`` (empty when valid).

    ``doc`` may be a parsed object, JSON bytes/str, or a path to a JSON file.
    """
    if kind not in _MAIN:
        raise ValueError(f"unknown schema kind {kind!r}; use one of {sorted(_MAIN)}")
    validator = _validator(kind)
    found = sorted(validator.iter_errors(_load(doc)), key=lambda e: list(map(str, e.path)))
    return [f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in found]


def validate(kind: Kind, doc: object) -> None:
    """Raise AssertionError listing the schema errors of ``doc`` (see ``errors``)."""
    problems = errors(kind, doc)
    if problems:
        listing = "\n  ".join(problems)
        raise AssertionError(f"{kind}: {len(problems)} schema error(s):\n  {listing}")
