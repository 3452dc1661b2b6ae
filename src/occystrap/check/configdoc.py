"""Checks of the image config (config.md) and of how it fits the manifest and the index.

Docker's habit of writing ``null`` for empty container-config fields is accepted.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidReference
from ..model.descriptor import Platform
from ..model.digest import Digest
from .documents import is_str_list, is_str_map
from .report import Report

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
_CONTAINER_FIELDS: dict[str, tuple[str, ...]] = {
    "User": ("str",),
    "WorkingDir": ("str",),
    "StopSignal": ("str",),
    "Env": ("strlist",),
    "Entrypoint": ("strlist",),
    "Cmd": ("strlist",),
    "ExposedPorts": ("map",),
    "Volumes": ("map",),
    "Labels": ("strmap",),
    "ArgsEscaped": ("bool",),
}


def _type_ok(value: Any, kind: str) -> bool:
    return {
        "str": isinstance(value, str),
        "strlist": is_str_list(value),
        "map": isinstance(value, dict),
        "strmap": is_str_map(value),
        "bool": isinstance(value, bool),
    }[kind]


def check_config(obj: dict[str, Any], what: str, report: Report) -> list[Digest | None] | None:
    """An image config per config.md; returns its diff_ids (None when rootfs is unusable)."""
    for key in ("architecture", "os"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            report.add("config-schema", f"{what} has no {key}")
    for key in ("variant", "os.version", "author"):
        if key in obj and not isinstance(obj[key], str):
            report.add("config-schema", f"{what}: {key} is not a string")
    _check_created(obj.get("created"), f"{what} created", report)
    cc = obj.get("config")
    if cc is not None and not isinstance(cc, dict):
        report.add("config-schema", f"{what}: 'config' is not an object")
    elif isinstance(cc, dict):
        for key, (kind,) in _CONTAINER_FIELDS.items():
            if cc.get(key) is not None and not _type_ok(cc[key], kind):
                report.add("config-schema", f"{what}: config.{key} has the wrong type")
    history = obj.get("history")
    if history is not None and not (
        isinstance(history, list) and all(isinstance(h, dict) for h in history)
    ):
        report.add("config-schema", f"{what}: history is not a list of objects")
    elif isinstance(history, list):
        for i, h in enumerate(history):
            if "empty_layer" in h and not isinstance(h["empty_layer"], bool):
                report.add("config-schema", f"{what}: history[{i}].empty_layer is not a boolean")
            _check_created(h.get("created"), f"{what} history[{i}].created", report)
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict):
        report.add("config-schema", f"{what} has no rootfs object")
        return None
    if rootfs.get("type") != "layers":
        report.add(
            "rootfs-type",
            f"{what} has rootfs.type {str(rootfs.get('type'))[:40]!r}, expected 'layers'",
        )
    ids = rootfs.get("diff_ids")
    if not isinstance(ids, list):
        report.add("config-schema", f"{what}: rootfs.diff_ids is not a list")
        return None
    out: list[Digest | None] = []
    for i, text in enumerate(ids):
        try:
            out.append(Digest.parse(text))
        except InvalidReference:
            report.add("config-schema", f"{what}: rootfs.diff_ids[{i}] is not a digest")
            out.append(None)
    return out


def _check_created(value: Any, what: str, report: Report) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        report.add("config-schema", f"{what} is not a string")
    elif not _RFC3339.match(value):
        report.add("created-format", f"{what} {value[:40]!r} is not an RFC 3339 timestamp")


def check_history(obj: dict[str, Any], layers: int, report: Report) -> None:
    """Non-empty history entries must match the layers one to one."""
    history = obj.get("history")
    if not isinstance(history, list) or not history:
        report.add("history-empty", "the image config has no history")
        return
    made = sum(1 for h in history if isinstance(h, dict) and not h.get("empty_layer"))
    if made != layers:
        report.add(
            "history-count",
            f"the config's history has {made} non-empty entries for {layers} layer(s)",
        )


def check_platform_match(
    entry: Platform | None, obj: dict[str, Any], what: str, report: Report
) -> None:
    """The platform an index claims for a manifest against the config it leads to."""
    if entry is None:
        return
    actual = Platform(
        str(obj.get("os") or ""), str(obj.get("architecture") or ""), str(obj.get("variant") or "")
    )
    if (entry.os, entry.architecture) != (actual.os, actual.architecture) or (
        entry.variant and actual.variant and entry.effective_variant() != actual.effective_variant()
    ):
        report.add("platform-mismatch", f"{what} is listed as {entry} but its config says {actual}")
