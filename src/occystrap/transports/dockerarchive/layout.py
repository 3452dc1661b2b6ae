"""The OCI image layout inside Docker 25+ and containerd-store saves (and oci-archives).

``index.json`` may point at manifests directly (Docker 25+ graphdriver saves) or at a
nested index whose entries name every platform while only some have blobs in the archive
(containerd image store); entries without blobs are passed over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import (
    DigestMismatch,
    IntegrityError,
    LimitExceeded,
    MalformedInput,
    UnsupportedFormat,
)
from ...model.descriptor import Descriptor
from ...model.digest import Digest
from ...model.manifest import Index, Manifest, parse
from ...model.media_types import is_index
from .members import Contents

log = logging.getLogger(__name__)

MAX_DEPTH = 4
MAX_ENTRIES = 4096
NAME_KEYS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


@dataclass(frozen=True)
class Found:
    """A manifest of the layout whose blob is in the archive, with the name it is filed under."""

    descriptor: Descriptor
    manifest: Manifest
    name: str | None


def blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.encoded}"


def _read_blob(view: Contents, desc: Descriptor, what: str) -> bytes | None:
    member = view.resolve(blob_path(desc.digest), what)
    if member is None:
        return None
    raw = view.read_small(member, f"{what} of {view.what}")
    if not desc.digest.supported:
        raise MalformedInput(f"{what} of {view.what} uses unsupported digest {desc.digest}")
    actual = Digest.of_bytes(raw, desc.digest.algorithm)
    if actual != desc.digest:
        raise DigestMismatch(f"{what} of {view.what}", str(desc.digest), str(actual))
    return raw


def _name(desc: Descriptor, inherited: str | None) -> str | None:
    ann = desc.annotations or {}
    for key in NAME_KEYS:
        if ann.get(key):
            return ann[key]
    return inherited


def walk_index(view: Contents) -> list[Found]:
    """Every manifest reachable from ``index.json`` whose blob is present, in index order."""
    member = view.resolve("index.json", "index.json")
    if member is None:
        return []
    top = parse(
        view.read_small(member, f"index.json of {view.what}"), what=f"index.json of {view.what}"
    )
    if not isinstance(top, Index):
        raise MalformedInput(f"index.json of {view.what} is not an image index")
    found: list[Found] = []
    seen = 0

    def walk(index: Index, depth: int, inherited: str | None) -> None:
        nonlocal seen
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"index.json of {view.what} nests indexes deeper than {MAX_DEPTH}")
        for desc in index.manifests:
            seen += 1
            if seen > MAX_ENTRIES:
                raise LimitExceeded(
                    f"index.json of {view.what} has more than {MAX_ENTRIES} entries"
                )
            name = _name(desc, inherited)
            raw = _read_blob(view, desc, "index entry")
            if raw is None:
                continue
            doc = parse(raw, desc.media_type, what=f"{desc.digest} of {view.what}")
            if isinstance(doc, Index):
                walk(doc, depth + 1, name)
            elif not is_index(desc.media_type):
                found.append(Found(desc, doc, name))

    walk(top, 0, None)
    return found


def find_oci_manifest(
    view: Contents, config: Digest, layer_paths: Sequence[str]
) -> tuple[Manifest, str | None] | None:
    """The layout's manifest for the image whose config is ``config`` and whose layers are
    stored at ``layer_paths`` (so its exact bytes can be kept), or None."""
    from .reader import digest_from_name

    try:
        candidates = walk_index(view)
    except (MalformedInput, UnsupportedFormat, LimitExceeded, IntegrityError) as e:
        log.debug("ignoring the OCI layout of %s: %s", view.what, e)
        return None
    for item in candidates:
        m = item.manifest
        if m.config.digest != config or len(m.layers) != len(layer_paths):
            continue
        named = [digest_from_name(p) for p in layer_paths]
        if all(n is None or n == d.digest for n, d in zip(named, m.layers, strict=True)):
            return m, item.name
    return None
