"""search: report entries matching a glob or regex, changing nothing.

Each hit names the layer, the path, the entry type, size and link target, and whether the
path is still visible in the final image, deleted by a later layer's whiteout or opaque
directory, or replaced by a later layer. Layers may be searched in parallel, so visibility
is decided in ``finish`` from per-layer records.
"""

from __future__ import annotations

import json
import re
import tarfile
import threading
from dataclasses import dataclass, field

from ..errors import InvalidOption
from ..events import Reporter
from ..tario.entry import TarEntry
from ..tario.paths import is_opaque, match, normalize, whiteout_target
from .base import ImageView, LayerView, PassThrough
from .options import SearchOptions

_TYPES = {
    tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "directory",
    tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.FIFOTYPE: "fifo",
    tarfile.CHRTYPE: "char-device", tarfile.BLKTYPE: "block-device", tarfile.CONTTYPE: "file",
}


@dataclass
class _LayerRecord:
    index: int
    digest: str
    hits: list[dict[str, object]] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)
    whiteouts: set[str] = field(default_factory=set)
    opaque_dirs: set[str] = field(default_factory=set)


class Search(PassThrough):
    name = "search"
    observes_layers = True

    def __init__(self, options: SearchOptions) -> None:
        if not options.pattern:
            raise InvalidOption("filter search needs pattern=...")
        self.options = options
        if options.regex:
            try:
                self._regex: re.Pattern[str] | None = re.compile(options.pattern)
            except re.error as e:
                raise InvalidOption(f"filter search: bad regex {options.pattern!r}: {e}") from None
        else:
            self._regex = None
        self._layers: dict[int, _LayerRecord] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def _matches(self, path: str) -> bool:
        if self._regex is not None:
            return self._regex.search(path) is not None
        return match(self.options.pattern, path)

    def process(self, entries, layer: LayerView):  # type: ignore[no-untyped-def]
        record = _LayerRecord(layer.index, str(layer.digest or layer.diff_id or f"layer-{layer.index}"))
        with self._lock:
            self._layers[layer.index] = record
        for entry in entries:
            self._look(entry, record)
            yield entry

    def _look(self, entry: TarEntry, record: _LayerRecord) -> None:
        info = entry.info
        path = normalize(info.name)
        target = whiteout_target(path)
        if is_opaque(path):
            record.opaque_dirs.add(path.rpartition("/")[0])
            return
        if target is not None:
            record.whiteouts.add(target)
            return
        record.paths.add(path)
        if self._matches(path):
            record.hits.append({
                "path": path,
                "type": _TYPES.get(info.type, "other"),
                "size": info.size if info.isreg() else 0,
                "link_target": info.linkname or None,
                "mode": f"{info.mode:04o}",
            })

    def _status(self, path: str, index: int) -> str:
        for later in sorted(k for k in self._layers if k > index):
            rec = self._layers[later]
            if any(path == w or path.startswith(w + "/") for w in rec.whiteouts):
                return f"deleted by layer {later}"
            if any(d == "" or path.startswith(d + "/") for d in rec.opaque_dirs):
                return f"deleted by layer {later} (opaque directory)"
            if path in rec.paths:
                return f"replaced by layer {later}"
        return "visible"

    def finish(self, image: ImageView, reporter: Reporter) -> None:
        hits = []
        for index in sorted(self._layers):
            rec = self._layers[index]
            digest = image.layers[index]["digest"] if index < len(image.layers) else rec.digest
            for hit in rec.hits:
                hits.append({"image": image.reference, "layer": index, "layer_digest": digest,
                             **hit, "status": self._status(str(hit["path"]), index)})
        self.hits += len(hits)
        for hit in hits:
            reporter.result(self._format(hit))
        if not self.options.json and not self.options.script_friendly:
            layers = len({h["layer"] for h in hits})
            reporter.notice(f"Found {len(hits)} match(es) in {layers} layer(s) of {image.reference}.")

    def _format(self, hit: dict[str, object]) -> str:
        if self.options.json:
            return json.dumps(hit, sort_keys=True)
        if self.options.script_friendly:
            fields = [hit["image"], hit["layer_digest"], hit["path"], hit["type"], hit["size"],
                      hit["link_target"] or "", hit["status"]]
            return "\t".join(str(f).replace("\t", " ").replace("\n", " ") for f in fields)
        link = f" -> {hit['link_target']}" if hit["link_target"] else ""
        return (f"{hit['layer_digest']}  {hit['path']}{link} ({hit['type']}, {hit['size']} bytes) "
                f"[{hit['status']}]")
