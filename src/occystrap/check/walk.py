"""Checking an OCI layout (a directory, or one inside a docker-save/oci-archive tarball).

:func:`pick_tops` chooses entries of ``index.json`` the way the ``ocidir://`` source does
(``:REF``, ``?index=N``, or the only image). :class:`Survey` follows every entry below
them: each index and manifest blob is fetched, its size and digest checked against the
descriptor that named it, and nested indexes are followed (at most :data:`MAX_DEPTH`
levels, :data:`MAX_DOCUMENTS` documents). :func:`choose` picks one image manifest by
platform, and :func:`check_image` checks it deeply: structure, config, layer descriptors
and, in full mode, every layer's bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ImageNotFound, InvalidOption, LimitExceeded, MalformedInput, PlatformNotFound
from ..model.descriptor import Descriptor, Platform
from ..model.digest import Digest
from ..model.media_types import INDEX_TYPES, MANIFEST_TYPES
from ..transports.ocilayout.layout import ref_names
from .configdoc import check_config, check_history, check_platform_match
from .documents import check_index, check_manifest, parse_json
from .layers import LayerExpect, check_layer
from .report import Report
from .stores import BlobStore

MAX_DEPTH = 8
MAX_DOCUMENTS = 4096


def fetch(
    store: BlobStore,
    desc: Descriptor,
    role: str,
    what: str,
    report: Report,
    missing: str = "blob-missing",
) -> bytes | None:
    """A small blob checked against ``desc`` (``role``: 'manifest' or 'config')."""
    try:
        size = store.size(desc.digest)
    except MalformedInput as e:
        report.add(missing, str(e))
        return None
    if size is None:
        report.add(missing, f"{what} is missing from {store.what}")
        return None
    if size != desc.size:
        report.add(f"{role}-size", f"{what} is {size} bytes, its descriptor says {desc.size}")
    try:
        raw = store.read(desc.digest)
    except (LimitExceeded, MalformedInput) as e:
        report.add("json-invalid", f"{what}: {e}")
        return None
    if size == desc.size and desc.digest.supported:
        actual = Digest.of_bytes(raw, desc.digest.algorithm)
        if actual != desc.digest:
            report.add(
                f"{role}-digest", f"{what} has digest {actual}, its descriptor says {desc.digest}"
            )
    return raw


def _answers_to(ref: str, names: Sequence[str]) -> bool:
    for name in names:
        if ref == name or any(
            name.startswith(p) and name[len(p) :] == ref
            for p in ("docker.io/library/", "docker.io/")
        ):
            return True
    return False


def pick_tops(
    entries: list[Any],
    descs: list[Descriptor | None],
    ref: str | None,
    position: int | None,
    where: str,
) -> list[int]:
    """Positions of the index.json entries the user named (all of them for one image)."""
    if position is not None:
        if ref is not None:
            raise InvalidOption(f"give either PATH:REF or ?index=N, not both ({ref!r}, {position})")
        if not 0 <= position < len(entries):
            raise ImageNotFound(
                f"{where} has {len(entries)} entries; index={position} is out of range"
            )
        return [position]
    if ref is not None:
        hits = [i for i, e in enumerate(entries) if _answers_to(ref, ref_names(e))]
        if not hits:
            known = sorted({n for e in entries for n in ref_names(e)})
            raise ImageNotFound(
                f"no image {ref!r} in {where}; its refs are: {', '.join(known) or 'none'}"
            )
        return hits
    if not entries:
        raise ImageNotFound(f"{where} lists no images")
    usable = [d for d in descs if d is not None]
    if len({d.digest for d in usable}) > 1 and len({d.ref_name for d in usable}) > 1:
        raise ImageNotFound(
            f"{where} holds {len(entries)} images; name one as PATH:REF or use ?index=N"
        )
    return list(range(len(entries)))


@dataclass
class Leaf:
    """An image manifest reached from index.json."""

    desc: Descriptor
    platform: Platform | None
    obj: dict[str, Any]
    top: int


@dataclass
class Survey:
    store: BlobStore
    report: Report
    leaves: list[Leaf] = field(default_factory=list)
    _seen: dict[Digest, Any] = field(default_factory=dict)

    def follow(
        self, desc: Descriptor, top: int, depth: int = 0, path: tuple[Digest, ...] = ()
    ) -> None:
        if desc.media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
            return  # an artifact, noted by check_index
        if desc.digest in path:
            self.report.add("index-schema", f"index loop: {desc.digest} contains itself")
            return
        if desc.digest not in self._seen:
            if len(self._seen) >= MAX_DOCUMENTS:
                raise LimitExceeded(
                    f"{self.store.what} has over {MAX_DOCUMENTS} manifests and indexes"
                )
            self._seen[desc.digest] = self._load(desc, depth)
        doc = self._seen[desc.digest]
        if isinstance(doc, list):  # an index: its entries
            if depth >= MAX_DEPTH:
                raise LimitExceeded(
                    f"indexes nested deeper than {MAX_DEPTH} levels in {self.store.what}"
                )
            for child in doc:
                if child is not None:
                    self.follow(child, top, depth + 1, (*path, desc.digest))
        elif isinstance(doc, dict):
            self.leaves.append(Leaf(desc, desc.platform, doc, top))

    def _load(self, desc: Descriptor, depth: int) -> Any:
        what = f"{'index' if desc.media_type in INDEX_TYPES else 'manifest'} {desc.digest}"
        raw = fetch(
            self.store,
            desc,
            "manifest",
            what,
            self.report,
            "index-child" if depth else "blob-missing",
        )
        obj = parse_json(raw, what, self.report) if raw is not None else None
        if obj is None:
            return None
        if desc.media_type in INDEX_TYPES:
            return check_index(obj, what, self.report, desc.media_type, layout=False)
        return obj


def _is_attestation(leaf: Leaf) -> bool:
    ann = leaf.desc.annotations or {}
    return ann.get("vnd.docker.reference.type") == "attestation-manifest" or (
        leaf.platform is not None and leaf.platform.os == "unknown"
    )


def choose(leaves: list[Leaf], wanted: Platform, explicit: bool) -> Leaf | None:
    """The image to check deeply: the only one, else the first for ``wanted``'s platform."""
    if len({leaf.desc.digest for leaf in leaves}) <= 1:
        return leaves[0] if leaves else None
    images = [leaf for leaf in leaves if not _is_attestation(leaf)]
    offered = []
    for leaf in images:
        if leaf.platform is not None:
            offered.append(str(leaf.platform))
            if wanted.matches(leaf.platform):
                return leaf
    if not explicit and len(images) == 1:
        return images[0]
    raise PlatformNotFound(str(wanted), offered)


def check_counts(
    layers: int, diff_ids: list[Digest | None] | None, config: dict[str, Any], report: Report
) -> None:
    if diff_ids is not None and len(diff_ids) != layers:
        report.add(
            "layer-count",
            f"the image has {layers} layer(s) but its config lists {len(diff_ids)} diff_ids",
        )
    check_history(config, layers, report)


def check_image(store: BlobStore, leaf: Leaf, report: Report, full: bool) -> None:
    """Everything about one image manifest of ``store``."""
    what = f"manifest {leaf.desc.digest}"
    view = check_manifest(leaf.obj, what, report, leaf.desc.media_type, detail=True)
    if not view.is_image or view.config is None:
        return
    config_what = f"config {view.config.digest}"
    raw = fetch(store, view.config, "config", config_what, report)
    config = parse_json(raw, config_what, report) if raw is not None else None
    if config is None:
        return
    diff_ids = check_config(config, config_what, report)
    check_platform_match(leaf.platform, config, what, report)
    check_counts(len(view.layers), diff_ids, config, report)
    for i, d in enumerate(view.layers):
        if d is None:
            continue
        label = f"layer {i} ({d.digest})"
        try:
            size = store.size(d.digest)
        except MalformedInput as e:
            report.add("blob-missing", f"{label} cannot be read: {e}", i)
            continue
        if size is None:
            if d.urls:
                report.add(
                    "not-checked", f"{label} is not in {store.what}; it lives at its urls", i
                )
            else:
                report.add("blob-missing", f"{label} is missing from {store.what}", i)
        elif not full:
            if size != d.size:
                report.add(
                    "layer-size", f"{label} is {size} bytes, its descriptor says {d.size}", i
                )
        else:
            diff_id = diff_ids[i] if diff_ids is not None and i < len(diff_ids) else None
            with store.open(d.digest) as reader:
                check_layer(
                    reader, LayerExpect(i, d.media_type, d.digest, d.size, diff_id, label), report
                )
    if not full and view.layers:
        report.add(
            "not-checked", "layer contents were not read (digests, diff_ids, members): use --full"
        )
