"""search: report entries matching a glob or regex, changing nothing.

A glob follows :func:`occystrap.tario.paths.match` (no ``/``: the basename at any depth,
a leading ``/`` anchors it at the top);
a regex is ``re.search`` on the normalized path (``usr/bin/sh``, no leading ``./``). Each
hit names the layer, the path, the entry type, size and link target, and its status in the
final image:

* ``visible``: nothing above the layer touches the path;
* ``replaced``: a later entry (in a later layer, or later in the same layer) has that path;
* ``deleted``: a later layer's whiteout or opaque directory hides it, or a later entry
  turns one of its parent directories into something else.

Whiteouts apply to lower layers only (OCI layer spec), so a whiteout in the hit's own layer
does not delete it. Layers may be searched in parallel, so statuses are decided in
``finish`` from what each layer recorded (every path, its type and position).
"""

from __future__ import annotations

import json
import re
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidOption
from ..events import Reporter
from ..tario.entry import TarEntry
from ..tario.paths import glob_test, is_opaque, is_whiteout, normalize, whiteout_target
from .base import ImageView, LayerView, PassThrough
from .options import SearchOptions

TYPES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.DIRTYPE: "directory",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.FIFOTYPE: "fifo",
    tarfile.CHRTYPE: "char-device",
    tarfile.BLKTYPE: "block-device",
}
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass
class _Layer:
    """What one layer holds: path -> (position of its last entry, is a directory)."""

    hits: list[dict[str, Any]] = field(default_factory=list)
    last: dict[str, tuple[int, bool]] = field(default_factory=dict)
    whiteouts: set[str] = field(default_factory=set)
    opaque: set[str] = field(default_factory=set)


def _parents(path: str) -> Iterator[str]:
    """``a/b/c`` -> ``a/b``, ``a``."""
    while "/" in path:
        path = path.rpartition("/")[0]
        yield path


class Search(PassThrough):
    name = "search"
    observes_layers = True

    def __init__(self, options: SearchOptions) -> None:
        if not options.pattern:
            raise InvalidOption("filter search needs pattern=...")
        if options.json and options.script_friendly:
            raise InvalidOption("filter search: choose json or script_friendly, not both")
        self.options = options
        self._test: Callable[[str], bool]
        if options.regex:
            try:
                regex = re.compile(options.pattern)
            except re.error as e:
                raise InvalidOption(f"filter search: bad regex {options.pattern!r}: {e}") from None
            self._test = lambda path: regex.search(path) is not None
        else:
            self._test = glob_test(options.pattern, subtree=False)
        self._layers: dict[int, _Layer] = {}
        self._lock = threading.Lock()
        #: hits reported so far, over every image
        self.hits = 0

    def matches(self, path: str) -> bool:
        """Does the normalized member ``path`` match the pattern?"""
        return self._test(path)

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        record = _Layer()
        with self._lock:
            self._layers[layer.index] = record
        for position, entry in enumerate(entries):
            self._look(entry, record, position)
            yield entry

    def _look(self, entry: TarEntry, record: _Layer, position: int) -> None:
        info = entry.info
        if info.type == tarfile.XGLTYPE:
            return
        path = normalize(info.name)
        if not path:
            return
        if is_whiteout(path):
            target = whiteout_target(path)
            if target is not None:
                record.whiteouts.add(target)
            elif is_opaque(path):
                record.opaque.add(path.rpartition("/")[0])
            return
        record.last[path] = (position, info.isdir())
        if self.matches(path):
            record.hits.append(
                {
                    "path": path,
                    "type": TYPES.get(info.type, "other"),
                    "size": info.size if info.isreg() else 0,
                    "link_target": info.linkname or None,
                    "mode": f"{info.mode & 0o7777:04o}",
                    "uid": info.uid,
                    "gid": info.gid,
                    "position": position,
                }
            )

    @staticmethod
    def _status(
        layers: dict[int, _Layer], path: str, index: int, position: int
    ) -> tuple[str, int | None]:
        """("visible" | "replaced" | "deleted", the layer that did it) for a hit."""
        own = layers[index]
        if own.last.get(path, (position, False))[0] > position:
            return "replaced", index
        for parent in _parents(path):
            later = own.last.get(parent)
            if later is not None and later[0] > position and not later[1]:
                return "deleted", index
        for j in sorted(k for k in layers if k > index):
            rec = layers[j]
            if path in rec.last:
                return "replaced", j
            parents = list(_parents(path))
            if path in rec.whiteouts or any(p in rec.whiteouts for p in parents):
                return "deleted", j
            if "" in rec.opaque or any(p in rec.opaque for p in parents):
                return "deleted", j
            if any(p in rec.last and not rec.last[p][1] for p in parents):
                return "deleted", j
        return "visible", None

    def finish(self, image: ImageView, reporter: Reporter) -> None:
        with self._lock:
            layers, self._layers = self._layers, {}
        hits = self._collect(image, layers)
        self.hits += len(hits)
        for hit in hits:
            reporter.result(self.format(hit))
        if not self.options.json and not self.options.script_friendly:
            count = len({h["layer"] for h in hits})
            reporter.notice(
                f"Found {len(hits)} match(es) in {count} layer(s) of {image.reference}."
            )

    def _collect(self, image: ImageView, layers: dict[int, _Layer]) -> list[dict[str, Any]]:
        hits = []
        for index in sorted(layers):
            written = image.layers[index] if index < len(image.layers) else {}
            for hit in layers[index].hits:
                status, by = self._status(layers, hit["path"], index, hit["position"])
                shown = {k: v for k, v in hit.items() if k != "position"}
                hits.append(
                    {
                        "image": image.reference,
                        "layer": index,
                        "layer_digest": written.get("digest"),
                        **shown,
                        "status": status,
                        "status_layer": by,
                    }
                )
        return hits

    def format(self, hit: dict[str, Any]) -> str:
        """One output line for ``hit`` in the chosen format."""
        if self.options.json:
            return json.dumps(hit, sort_keys=True, ensure_ascii=False)
        if self.options.script_friendly:
            by = hit["status_layer"]
            fields = (
                hit["image"],
                hit["layer_digest"] or "",
                hit["path"],
                hit["type"],
                hit["size"],
                hit["link_target"] or "",
                hit["status"],
                "" if by is None else by,
            )
            return "\t".join(str(f).translate(_ESCAPES) for f in fields)
        link = f" -> {hit['link_target']}" if hit["link_target"] else ""
        status = hit["status"]
        if hit["status_layer"] is not None:
            status += f" by layer {hit['status_layer']}"
        return (
            f"{hit['layer_digest']}  {hit['path']}{link} "
            f"({hit['type']}, {hit['size']} bytes) [{status}]"
        )
