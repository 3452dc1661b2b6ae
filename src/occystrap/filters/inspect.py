"""inspect: append one JSON line per image describing its layers in manifest order.

At its place in the chain the filter computes, per layer, the diff_id and size of the tar
the entries form there: the headers exactly as the writer would emit them (raw bytes when
unchanged, else re-encoded), the bodies as they stream past, and the end of the archive as
the source had it when nothing upstream changed the layer (then the diff_id is the
source's), else the writer's two zero blocks. Placed between filters, it shows what each one
changed; every line also carries what the sink finally stored. One line per image::

    {"name": ..., "manifest_digest": ..., "config_digest": ...,
     "layers": [{"index", "diff_id", "tar_size", "digest", "size", "media_type",
                 "created_by", "written": {"digest", "diff_id", "size", "media_type"}}]}

``digest``/``size`` name the stored blob holding that exact tar when one is known (the
source's or the written one), else null.
"""

from __future__ import annotations

import json
import tarfile
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidOption, OutputError
from ..events import Reporter
from ..model.digest import Hasher
from ..tario.encode import encode_header, pax_block
from ..tario.entry import BodyReader, TarEntry
from ..tario.fields import HEADER_ONLY
from ..tario.source import BLOCK
from .base import ImageView, LayerView, PassThrough
from .options import InspectOptions

_END_MARKER = bytes(2 * BLOCK)
_GLOBAL_FIELDS = ("uid", "gid", "uname", "gname", "mtime")


class Inspect(PassThrough):
    name = "inspect"
    observes_layers = True

    def __init__(self, options: InspectOptions) -> None:
        if not options.file:
            raise InvalidOption("filter inspect needs file=PATH")
        self.path = options.file
        self._layers: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        """Hash the tar these entries form at this point while passing them on unchanged."""
        tar = _TarDigest()
        for entry in entries:
            size = tar.header(entry)
            if not size:
                yield entry
                continue
            tap = _HashingBody(entry.body, tar.digest)
            entry.body = tap
            yield entry
            tap.finish()
            tar.digest.update(bytes(-size % BLOCK))
        end = layer.source_end
        same = tar.unchanged and end.entries == tar.entries and end.trailer is not None
        tar.digest.update(bytes(end.trailer or 0) if same else _END_MARKER)
        diff_id = tar.digest.digest()
        record = {
            "index": layer.index,
            "diff_id": str(diff_id),
            "tar_size": tar.digest.size,
            "media_type": layer.media_type,
            "created_by": layer.created_by,
            "digest": str(layer.digest) if layer.digest and diff_id == layer.diff_id else None,
            "size": layer.size if layer.digest and diff_id == layer.diff_id else None,
        }
        with self._lock:
            self._layers[layer.index] = record

    def finish(self, image: ImageView, reporter: Reporter) -> None:
        with self._lock:
            seen, self._layers = self._layers, {}
        layers = []
        for index, written in enumerate(image.layers):
            rec = dict(seen.get(index) or {"index": index, "diff_id": None, "digest": None})
            rec["written"] = dict(written)
            if rec["digest"] is None and rec["diff_id"] and rec["diff_id"] == written["diff_id"]:
                rec["digest"], rec["size"] = written["digest"], written["size"]
            layers.append(rec)
        line = {
            "name": image.reference,
            "manifest_digest": str(image.manifest_digest) if image.manifest_digest else None,
            "config_digest": str(image.config.digest),
            "layers": layers,
        }
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
        except OSError as e:
            raise OutputError(f"inspect: cannot write {self.path}: {e.strerror}") from None


class _TarDigest:
    """Hashes headers as ``occystrap.tario.writer`` writes them (PAX globals included)."""

    def __init__(self) -> None:
        self.digest = Hasher()
        self.globals: dict[str, str] = {}
        self.force: tuple[str, ...] = ()
        self.entries = 0
        self.unchanged = True

    def header(self, entry: TarEntry) -> int:
        """Hash ``entry``'s header; return how many body bytes follow it in the tar."""
        info, raw = entry.info, entry.raw_header
        self.entries += 1
        self.unchanged = self.unchanged and raw is not None
        if info.type == tarfile.XGLTYPE:
            for key, value in info.pax_headers.items():
                if value:
                    self.globals[key] = value
                else:
                    self.globals.pop(key, None)
            self.force = tuple(k for k in _GLOBAL_FIELDS if k in self.globals)
            if raw is None:
                self.digest.update(pax_block(info.pax_headers, tarfile.XGLTYPE))
                return 0
        self.digest.update(raw if raw is not None else encode_header(info, force=self.force))
        return 0 if info.type in HEADER_ONLY else info.size


class _HashingBody:
    """Passes a body through, hashing what is read; ``finish`` hashes what was not read."""

    def __init__(self, inner: BodyReader, digest: Hasher) -> None:
        self._inner = inner
        self._digest = digest

    @property
    def remaining(self) -> int:
        return self._inner.remaining

    @remaining.setter
    def remaining(self, value: int) -> None:
        self._inner.remaining = value

    def read(self, n: int = -1, /) -> bytes:
        data = self._inner.read(n)
        self._digest.update(data)
        return data

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        count = self._inner.readinto(buffer)
        self._digest.update(memoryview(buffer)[:count])
        return count

    def finish(self) -> None:
        while data := self._inner.read(1 << 20):
            self._digest.update(data)
