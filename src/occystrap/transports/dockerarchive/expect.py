"""Planning a streamed archive from pre-knowledge (a daemon's image inspect).

With the config digest known, the plan is ready as soon as the config member passes;
each layer is then looked for under the names tools give it (``blobs/sha256/<diff_id>``,
``<diff_id>.tar``, ``<diff_id>/layer.tar``), by its content digest, and, once
``manifest.json`` arrives, under the path it names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ...errors import MalformedInput, OccystrapError
from ...model.digest import Digest
from ...model.media_types import MediaType
from .layout import blob_path
from .manifest_json import parse_manifest_json
from .members import Contents, NeedMore
from .reader import LayerRef, Plan, digest_from_name, load_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expect:
    """What the caller knows before the stream starts (a daemon's image inspect)."""

    config: Digest
    diff_ids: tuple[Digest, ...] = ()
    name: str | None = None
    tag: str | None = None


def expected_plan(view: Contents, expect: Expect) -> Plan:
    """The plan once the config is in ``view``; NeedMore before that."""
    for path in (f"{expect.config.encoded}.json", blob_path(expect.config)):
        if view.resolve(path, "config") is not None:
            config = load_config(view, path, expect.config)
            break
    else:
        if not view.complete:
            raise NeedMore("config")
        raise MalformedInput(f"{view.what} holds no config {expect.config}")
    diff_ids = config.diff_ids
    if expect.diff_ids and tuple(expect.diff_ids) != diff_ids:
        raise MalformedInput(f"the config in {view.what} disagrees with the expected layers")
    history = config.layer_history()
    layers = [
        LayerRef(
            i,
            (blob_path(d), f"{d.encoded}.tar", f"{d.encoded}/layer.tar"),
            d,
            MediaType.DOCKER_LAYER,
            "none",
            d,
            None,
            history[i],
            match_content=True,
        )
        for i, d in enumerate(diff_ids)
    ]
    return Plan(expect.name, expect.tag, config, layers, None)


def refine(plan: Plan, expect: Expect, manifest_json: bytes, what: str) -> None:
    """``manifest.json`` arrived after the plan: put each layer's real path first."""
    try:
        entries = parse_manifest_json(manifest_json, what)
    except OccystrapError as e:
        log.warning("ignoring manifest.json of %s: %s", what, e)
        return
    for entry in entries:
        if digest_from_name(entry.config) != expect.config or len(entry.layers) != len(plan.layers):
            continue
        for ref, path in zip(plan.layers, entry.layers, strict=True):
            ref.paths = (path, *[p for p in ref.paths if p != path])
        return
