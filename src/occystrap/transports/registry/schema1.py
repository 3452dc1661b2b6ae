"""Docker schema 1 manifests (signed and unsigned), read and converted to a v2-like image.

Schema 1 lists ``fsLayers`` (``blobSum``) and ``history`` (``v1Compatibility``, a JSON string
per entry) newest first, with no sizes and no config blob. The conversion follows Docker's
own (``MakeConfigFromV1Config``): entries are reversed to bottom-first; entries marked
``throwaway`` made no layer, so their blobs are skipped and their history entries get
``empty_layer``; the config is the newest ``v1Compatibility`` without its v1 bookkeeping
(``id``, ``parent``, ``Size``, ``parent_id``, ``layer_id``, ``throwaway``) plus ``history`` and
``rootfs``. The diff_ids are not in the manifest: they are known only once each layer is
decompressed, so the registry source fetches the layers first and calls
:func:`config_with_diff_ids` (see ``schema1_layers.py``).

A signed manifest (``…v1+prettyjws``) is identified by the digest of its JWS payload: the
manifest without ``signatures``, rebuilt from the protected header's ``formatLength`` and
``formatTail`` as libtrust does. Signatures are not verified (no peer does any more).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidReference, MalformedInput
from ...model.config import ImageConfig
from ...model.digest import Digest
from ...model.jsonfile import dump_canonical, load_object

_V1_ONLY = ("id", "parent", "Size", "parent_id", "layer_id", "throwaway")


@dataclass(frozen=True)
class Schema1:
    """A schema 1 manifest, converted: layer blobs bottom first, config without diff_ids."""

    name: str
    tag: str
    layers: tuple[Digest, ...]
    history: tuple[dict[str, Any], ...]  # one per layer in ``layers``, bottom first
    config: dict[str, Any]  # v2 config; rootfs.diff_ids still empty
    digest: Digest  # as registries and docker compute it (the payload's, when signed)


def parse(raw: bytes, what: str) -> Schema1:
    """Parse and convert ``raw``; MalformedInput names what is wrong."""
    doc = load_object(raw, what)
    if doc.get("schemaVersion") != 1:
        raise MalformedInput(f"{what} is not a schema 1 manifest")
    fs_layers, history = doc.get("fsLayers"), doc.get("history")
    if not isinstance(fs_layers, list) or not isinstance(history, list) or not fs_layers:
        raise MalformedInput(f"{what} has no fsLayers/history lists")
    if len(fs_layers) != len(history):
        raise MalformedInput(
            f"{what} has {len(fs_layers)} fsLayers but {len(history)} history entries"
        )
    entries: list[tuple[Digest, dict[str, Any]]] = []
    for i, (layer, hist) in enumerate(zip(fs_layers, history, strict=True)):
        entries.append(
            (_blob_sum(layer, f"{what} fsLayers[{i}]"), _v1(hist, f"{what} history[{i}]"))
        )
    entries.reverse()  # bottom first
    layers: list[Digest] = []
    layer_history: list[dict[str, Any]] = []
    config_history: list[dict[str, Any]] = []
    for blob, v1 in entries:
        item = _history_item(v1)
        config_history.append(item)
        if not v1.get("throwaway"):
            layers.append(blob)
            layer_history.append(item)
    config = copy.deepcopy(entries[-1][1])
    for key in _V1_ONLY:
        config.pop(key, None)
    config.setdefault("architecture", doc.get("architecture") or "amd64")
    config.setdefault("os", "linux")
    config["history"] = config_history
    config["rootfs"] = {"type": "layers", "diff_ids": []}
    name, tag = doc.get("name"), doc.get("tag")
    return Schema1(
        name if isinstance(name, str) else "",
        tag if isinstance(tag, str) else "",
        tuple(layers),
        tuple(layer_history),
        config,
        Digest.of_bytes(payload(raw, doc, what)),
    )


def config_with_diff_ids(s1: Schema1, diff_ids: list[Digest]) -> ImageConfig:
    """The converted config, complete once every layer's diff_id is known."""
    if len(diff_ids) != len(s1.layers):
        raise ValueError("one diff_id per layer is needed")
    obj = copy.deepcopy(s1.config)
    obj["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}
    return ImageConfig.parse(dump_canonical(obj), "image config (converted from schema 1)")


def payload(raw: bytes, doc: dict[str, Any], what: str) -> bytes:
    """The bytes a schema 1 digest is computed over: ``raw`` itself when unsigned."""
    signatures = doc.get("signatures")
    if not signatures:
        return raw
    if not isinstance(signatures, list) or not isinstance(signatures[0], dict):
        raise MalformedInput(f"{what} has malformed signatures")
    try:
        header = json.loads(_b64url(str(signatures[0]["protected"])))
        length, tail = int(header["formatLength"]), _b64url(str(header["formatTail"]))
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise MalformedInput(f"{what} has a malformed JWS protected header") from None
    if not 0 < length <= len(raw):
        raise MalformedInput(f"{what} has a JWS formatLength outside the manifest")
    return raw[:length] + tail


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _blob_sum(layer: Any, what: str) -> Digest:
    if not isinstance(layer, dict) or not isinstance(layer.get("blobSum"), str):
        raise MalformedInput(f"{what} has no blobSum")
    try:
        return Digest.parse(layer["blobSum"])
    except InvalidReference as e:
        raise MalformedInput(f"{what}: {e}") from None


def _v1(entry: Any, what: str) -> dict[str, Any]:
    text = entry.get("v1Compatibility") if isinstance(entry, dict) else None
    if not isinstance(text, str):
        raise MalformedInput(f"{what} has no v1Compatibility string")
    return load_object(text.encode(), f"{what} v1Compatibility")


def _history_item(v1: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if isinstance(v1.get("created"), str):
        item["created"] = v1["created"]
    if isinstance(v1.get("author"), str) and v1["author"]:
        item["author"] = v1["author"]
    container = v1.get("container_config")
    cmd = container.get("Cmd") if isinstance(container, dict) else None
    if isinstance(cmd, list) and cmd:
        item["created_by"] = " ".join(str(c) for c in cmd)
    if isinstance(v1.get("comment"), str) and v1["comment"]:
        item["comment"] = v1["comment"]
    if v1.get("throwaway"):
        item["empty_layer"] = True
    return item
