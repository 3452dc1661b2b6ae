"""``catalog.json`` of a ``dir://`` store: which images and tags it holds, and their files.

Shape: ``{"<image name>": {"<tag>": {"manifest": FILE, "config": FILE, "layers": [FILE...]}}}``
with every FILE relative to the store. Updates are read-modify-write under an exclusive
``flock`` on ``catalog.json.lock`` and replace the file atomically, so processes writing the
same store at once never lose each other's entries and readers never see a torn file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...blobio.spool import atomic_write
from ...errors import OccystrapError, OutputError
from ...model.jsonfile import load_object
from ..ocilayout.layout import exclusive_lock, read_small

CATALOG_FILE = "catalog.json"
LOCK_FILE = "catalog.json.lock"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def sanitise(text: str) -> str:
    """A file-name-safe form of an image name or tag (``/`` and ``:`` become ``_``)."""
    clean = _UNSAFE.sub("_", text).lstrip(".")
    return clean or "_"


@contextmanager
def store_lock(root: str) -> Iterator[None]:
    """Serialise updates of the store's shared files between threads and processes."""
    with exclusive_lock(root, LOCK_FILE):
        yield


def load(root: str) -> dict[str, Any]:
    """The catalog (empty when there is none yet); a corrupt one is an error, never clobbered."""
    path = os.path.join(root, CATALOG_FILE)
    if not os.path.exists(path):
        return {}
    try:
        return load_object(read_small(path, path), path)
    except OccystrapError as e:
        raise OutputError(f"cannot update {path}: {e}") from None


def record(root: str, name: str, tag: str, entry: dict[str, Any]) -> None:
    """Set ``catalog[name][tag] = entry``; the caller holds :func:`store_lock`."""
    catalog = load(root)
    tags = catalog.get(name)
    if not isinstance(tags, dict):
        tags = {}
    tags[tag] = entry
    catalog[name] = tags
    write_json(os.path.join(root, CATALOG_FILE), catalog)


def write_json(path: str, obj: Any) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n")
