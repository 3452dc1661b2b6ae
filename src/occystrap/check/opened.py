"""Checking an image through its transport's own source (registries, daemons, streams).

Those sources verify what they read, so a defect they refuse before an image exists is
their one-line error; defects found while layers stream (digest, size, diff_id) and every
structural rule of the documents they hand over become results. When the source can open
other manifests of an index (``Image.open_manifest``, e.g. a registry), every other entry is
fetched too and checked as a manifest; otherwise that is noted as ``not-checked``.
"""

from __future__ import annotations

from ..api import open_source
from ..errors import (
    IntegrityError,
    MalformedInput,
    NotFound,
    SizeMismatch,
    UnsupportedFormat,
)
from ..image import Image
from ..model.descriptor import Descriptor, Platform
from ..model.media_types import INDEX_TYPES, MANIFEST_TYPES
from ..transports.base import RunContext
from .configdoc import check_config, check_platform_match
from .documents import check_index, check_manifest, parse_json
from .layers import LayerExpect, check_layer
from .report import Report
from .walk import check_counts

NOT_READ = "layer contents were not read (digests, diff_ids, members): use --full"


def check_opened(uri: str, ctx: RunContext, report: Report, full: bool) -> None:
    with open_source(uri, ctx) as image:
        entry_platform = _check_index(image, report) if image.index is not None else None
        media_types: list[str | None] = [None] * len(image.layers)
        if image.manifest is not None:
            what = f"manifest {image.manifest.digest}"
            obj = parse_json(image.manifest.raw, what, report)
            if obj is not None:
                view = check_manifest(obj, what, report, image.manifest.media_type)
                media_types = [d.media_type if d else None for d in view.layers]
                cfg = view.config
                if cfg is not None and cfg.size != image.config.size:
                    report.add(
                        "config-size",
                        f"config is {image.config.size} bytes, the manifest says {cfg.size}",
                    )
                elif cfg is not None and cfg.digest != image.config.digest:
                    report.add(
                        "config-digest",
                        f"config is {image.config.digest}, the manifest says {cfg.digest}",
                    )
        else:
            label = image.source_label or uri
            report.add("format", f"{label} offers no manifest (config and layers only)")
        config = parse_json(image.config.raw, "image config", report)
        if config is None:
            return
        diff_ids = check_config(config, "image config", report)
        check_platform_match(entry_platform, config, "the image", report)
        check_counts(len(image.layers), diff_ids, config, report)
        if not full:
            report.add("not-checked", NOT_READ)
            return
        for layer, media_type in zip(image.layers, media_types, strict=False):
            expect = LayerExpect(
                layer.index,
                media_type,
                layer.stored_digest,
                layer.stored_size,
                layer.diff_id,
                f"layer {layer.index} ({layer.label})",
            )
            try:
                with layer.open() as reader:
                    check_layer(reader, expect, report)
            except IntegrityError as e:  # found by the source itself once the stream ended
                check_id = "diff-id" if "diff_id" in str(e) else "layer-digest"
                report.add(check_id, str(e), layer.index)


def _check_index(image: Image, report: Report) -> Platform | None:
    """The index's structure and, where the source can, its other entries."""
    assert image.index is not None
    what = f"index {image.index.digest}"
    index_obj = parse_json(image.index.raw, what, report)
    if index_obj is None:
        return None
    chosen = image.manifest.digest if image.manifest is not None else None
    descs = check_index(index_obj, what, report, image.index.media_type, layout=False)
    platform = next((d.platform for d in descs if d is not None and d.digest == chosen), None)
    others = [
        (i, d)
        for i, d in enumerate(descs)
        if d is not None and d.digest != chosen and d.media_type in (*MANIFEST_TYPES, *INDEX_TYPES)
    ]
    if image.open_manifest is None:
        if others:
            report.add(
                "not-checked", "the index's other manifests cannot be fetched from this source"
            )
        return platform
    for i, d in others:
        _check_entry(image, i, d, f"{what} entry {i} ({d.digest})", report)
    return platform


def _check_entry(image: Image, i: int, desc: Descriptor, what: str, report: Report) -> None:
    assert image.open_manifest is not None
    try:
        with image.open_manifest(desc) as child:
            if child.manifest is not None:
                obj = parse_json(child.manifest.raw, what, report)
                if obj is not None:
                    check_manifest(obj, what, report, child.manifest.media_type, detail=False)
    except NotFound as e:
        report.add("index-child", f"{what} cannot be fetched: {e}")
    except SizeMismatch as e:
        report.add("manifest-size", f"{what}: {e}")
    except IntegrityError as e:
        report.add("manifest-digest", f"{what}: {e}")
    except (MalformedInput, UnsupportedFormat) as e:
        report.add("manifest-schema", f"{what} cannot be read: {e}")
