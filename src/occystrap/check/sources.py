"""How ``check`` reads layouts and docker-save archives: their files and members directly.

The transports verify everything they read and refuse broken images, which is right for a
copy but hides what is wrong; here each defect is reported by name instead.

* ``ocidir://``: the layout's files (:class:`LayoutStore`), walked by :mod:`.walk`.
* ``tar://`` naming a seekable, uncompressed file: the archive's members
  (:class:`ArchiveStore`): ``manifest.json``, the config and layers it names, and the OCI
  layout next to it when there is one (Docker 25+, containerd store); an archive with only
  an OCI layout (oci-archive) is walked like a layout.

Every other source goes through its transport (:mod:`.opened`). Missing files and
unreadable top-level documents (``index.json``, ``manifest.json``) raise the usual typed
errors: there is no image to report on.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ..blobio.decompress import Compression, detect
from ..errors import (
    ImageNotFound,
    MalformedInput,
    PlatformNotFound,
    UnsupportedFormat,
)
from ..model.descriptor import DEFAULT_PLATFORM, Platform
from ..model.digest import Digest
from ..model.jsonfile import load_object
from ..transports.base import RunContext
from ..transports.dockerarchive.manifest_json import choose as choose_entry
from ..transports.dockerarchive.manifest_json import parse_manifest_json
from ..transports.dockerarchive.members import index_seekable
from ..transports.dockerarchive.reader import digest_from_name
from ..transports.dockerarchive.source import open_archive
from ..transports.ocilayout.layout import read_small
from .configdoc import check_config, check_platform_match
from .documents import check_index, check_manifest, parse_json
from .layers import LayerExpect, check_layer
from .report import Report
from .stores import ArchiveStore, BlobStore, LayoutStore
from .walk import Leaf, Survey, check_counts, check_image, choose, pick_tops


def check_ocidir(
    root: str, ref: str | None, options: Any, ctx: RunContext, report: Report, full: bool
) -> None:
    marker = os.path.join(root, "oci-layout")
    if not os.path.isdir(root):
        raise ImageNotFound(f"no OCI image layout at {root} (not a directory)")
    if not os.path.exists(marker):
        raise ImageNotFound(f"{root} is not an OCI image layout (no oci-layout file)")
    layout = parse_json(read_small(marker, marker, 1 << 20), marker, report)
    if layout is not None and layout.get("imageLayoutVersion") != "1.0.0":
        report.add(
            "layout-version",
            f"{marker} has imageLayoutVersion {layout.get('imageLayoutVersion')!r}",
        )
    where = os.path.join(root, "index.json")
    platform = Platform.parse(options.platform) if options.platform else ctx.platform
    check_layout(
        LayoutStore(root),
        read_small(where, where),
        where,
        ref,
        options.index,
        platform,
        report,
        full,
    )


def check_layout(
    store: BlobStore,
    index_raw: bytes,
    where: str,
    ref: str | None,
    position: int | None,
    platform: Platform | None,
    report: Report,
    full: bool,
) -> None:
    """The image named by ``ref``/``position``/``platform`` in the layout behind ``store``."""
    index_obj = load_object(index_raw, where)  # unreadable index.json: no image to check
    descs = check_index(index_obj, where, report, None, layout=True)
    entries = index_obj.get("manifests")
    if not isinstance(entries, list) or not entries:
        if report.errors:
            return
        raise ImageNotFound(f"{where} lists no images")
    survey = Survey(store, report)
    for top in pick_tops(entries, descs, ref, position, where):
        desc = descs[top]
        if desc is not None:
            survey.follow(desc, top)
    try:
        leaf = choose(survey.leaves, platform or DEFAULT_PLATFORM, platform is not None)
    except PlatformNotFound as e:
        if not report.errors:
            raise  # a sound index without the platform: the caller must pick another
        report.add("not-checked", f"no image was checked deeply: {e}")
        leaf = None
    _other_manifests(survey.leaves, leaf, report)
    if leaf is None:
        if not survey.leaves:
            report.add("not-checked", f"{where} leads to no image manifest that could be read")
        return
    check_image(store, leaf, report, full)


def _other_manifests(leaves: list[Leaf], chosen: Leaf | None, report: Report) -> None:
    done = {chosen.desc.digest} if chosen is not None else set()
    for leaf in leaves:
        if leaf.desc.digest not in done:
            done.add(leaf.desc.digest)
            check_manifest(
                leaf.obj, f"manifest {leaf.desc.digest}", report, leaf.desc.media_type, detail=False
            )


def check_archive(path: str, options: Any, report: Report, full: bool) -> bool:
    """A seekable, uncompressed docker-save/oci-archive file; False for anything else."""
    label = f"tar://{path}"
    f = open_archive(os.path.expanduser(path), label)
    with f:
        if (
            not stat.S_ISREG(os.fstat(f.fileno()).st_mode)
            or detect(os.pread(f.fileno(), 4, 0)) is not Compression.NONE
        ):
            return False
        store = ArchiveStore(f, index_seekable(f, label), label)
        mj = store.member("manifest.json")
        index_member = store.member("index.json")
        if mj is None:
            if index_member is not None:
                report.add("format", f"{label} is an oci-archive (OCI layout, no manifest.json)")
                raw = store.read_member(index_member, "index.json")
                check_layout(
                    store,
                    raw,
                    f"index.json of {label}",
                    options.image,
                    options.index,
                    None,
                    report,
                    full,
                )
                return True
            if store.member("repositories") is not None:
                raise UnsupportedFormat(
                    f"{label} is a pre-1.10 docker save archive (no manifest.json)"
                )
            raise MalformedInput(f"{label} is not a docker save archive (no manifest.json)")
        entries = parse_manifest_json(store.read_member(mj, "manifest.json"), label)
        entry = choose_entry(entries, options.image, options.index, label).entry
        extra = " with an OCI layout" if index_member is not None else ""
        report.add("format", f"{label} is a docker-save archive (manifest.json){extra}")
        _check_saved_image(
            store, entry.config, list(entry.layers), index_member is not None, report, full
        )
    return True


def _check_saved_image(
    store: ArchiveStore,
    config_path: str,
    paths: list[str],
    has_layout: bool,
    report: Report,
    full: bool,
) -> None:
    member = store.member(config_path)
    if member is None:
        report.add("blob-missing", f"config {config_path!r} is missing from {store.what}")
        return
    raw = store.read_member(member, f"config {config_path!r}")
    actual = Digest.of_bytes(raw)
    named = digest_from_name(config_path)
    if named is not None and named.supported and Digest.of_bytes(raw, named.algorithm) != named:
        report.add(
            "config-digest", f"config {config_path!r} has digest {actual}, its name says {named}"
        )
    config = parse_json(raw, f"config {config_path!r}", report)
    if config is None:
        return
    diff_ids = check_config(config, f"config {config_path!r}", report)
    check_counts(len(paths), diff_ids, config, report)
    leaf = _saved_manifest(store, actual, report) if has_layout else None
    if leaf is not None:
        view = check_manifest(
            leaf.obj, f"manifest {leaf.desc.digest}", report, leaf.desc.media_type
        )
        check_platform_match(leaf.platform, config, f"manifest {leaf.desc.digest}", report)
        if view.config is not None and view.config.size != len(raw):
            report.add(
                "config-size",
                f"config is {len(raw)} bytes, the OCI manifest says {view.config.size}",
            )
        if len(view.layers) != len(paths):
            report.add(
                "layer-count",
                f"the OCI manifest lists {len(view.layers)} layers, manifest.json {len(paths)}",
            )
        descs = list(view.layers) if len(view.layers) == len(paths) else [None] * len(paths)
    else:
        descs = [None] * len(paths)
    for i, (path, desc) in enumerate(zip(paths, descs, strict=True)):
        label = f"layer {i} ({path})"
        try:
            layer = store.member(path)
        except MalformedInput as e:  # a link out of the archive, a link loop
            report.add("blob-missing", f"{label} cannot be read: {e}", i)
            continue
        if layer is None:
            report.add("blob-missing", f"{label} is missing from {store.what}", i)
            continue
        if desc is not None and layer.size != desc.size and not full:
            report.add(
                "layer-size", f"{label} is {layer.size} bytes, its descriptor says {desc.size}", i
            )
        if full:
            diff_id = diff_ids[i] if diff_ids is not None and i < len(diff_ids) else None
            digest = desc.digest if desc is not None else digest_from_name(path)
            expect = LayerExpect(
                i,
                desc.media_type if desc else None,
                digest,
                desc.size if desc else None,
                diff_id,
                label,
            )
            check_layer(store.stream(layer), expect, report)
    if not full and paths:
        report.add(
            "not-checked", "layer contents were not read (digests, diff_ids, members): use --full"
        )


def _saved_manifest(store: ArchiveStore, config: Digest, report: Report) -> Leaf | None:
    """The OCI manifest of the archive's layout whose config is ``config``."""
    member = store.member("index.json")
    assert member is not None
    where = f"index.json of {store.what}"
    index_obj = parse_json(store.read_member(member, "index.json"), where, report)
    if index_obj is None:
        return None
    survey = Survey(store, report)
    for top, desc in enumerate(check_index(index_obj, where, report, None, layout=True)):
        if desc is not None:
            survey.follow(desc, top)
    match = next((leaf for leaf in survey.leaves if _config_of(leaf) == str(config)), None)
    _other_manifests(survey.leaves, match, report)
    if match is None:
        report.add("oci-layout", f"{where} names no manifest for config {config}")
    return match


def _config_of(leaf: Leaf) -> str | None:
    config = leaf.obj.get("config")
    return config.get("digest") if isinstance(config, dict) else None
