"""inspect: append one JSON line per image describing its layers in manifest order.

At its place in the chain the filter records, per layer, the uncompressed digest and size
of the tar stream as it stands there (computed as the entries flow past), the source's
stored digest, and the history line that made the layer. Placed between two filters, it
shows what each changed; the final line also carries what was actually written.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

from ..errors import InvalidOption, OutputError
from ..events import Reporter
from ..model.digest import Hasher
from ..tario.entry import BodyReader, TarEntry
from ..tario.writer import encode_header
from .base import ImageView, LayerView, PassThrough
from .options import InspectOptions


class Inspect(PassThrough):
    name = "inspect"
    observes_layers = True

    def __init__(self, options: InspectOptions) -> None:
        if not options.file:
            raise InvalidOption("filter inspect needs file=PATH")
        self.path = options.file
        self._layers: dict[int, dict[str, object]] = {}
        self._lock = threading.Lock()

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        """Hash the tar these entries form at this point while passing them on unchanged."""
        digest = Hasher()
        for entry in entries:
            digest.update(entry.raw_header if entry.raw_header is not None else encode_header(entry.info))
            tap = _HashingBody(entry.body, digest)
            entry.body = tap
            yield entry
            tap.finish()
            pad = -entry.info.size % 512
            digest.update(b"\0" * pad)
        digest.update(b"\0" * 1024)
        with self._lock:
            self._layers[layer.index] = {
                "index": layer.index,
                "source_digest": str(layer.digest) if layer.digest else None,
                "diff_id": str(digest.digest()),
                "size": digest.size,
                "media_type": layer.media_type,
                "created_by": layer.created_by,
            }

    def finish(self, image: ImageView, reporter: Reporter) -> None:
        layers = []
        for index in sorted(self._layers):
            rec = dict(self._layers[index])
            if index < len(image.layers):
                rec["written_digest"] = image.layers[index]["digest"]
                rec["written_size"] = image.layers[index]["size"]
            layers.append(rec)
        line = {
            "name": image.reference,
            "manifest_digest": str(image.manifest_digest) if image.manifest_digest else None,
            "config_digest": str(image.config.digest),
            "layers": layers,
        }
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(line, sort_keys=True) + "\n")
        except OSError as e:
            raise OutputError(f"inspect: cannot write {self.path}: {e.strerror}") from None


class _HashingBody:
    """Passes a body through, hashing what is read; ``finish`` hashes what was not read."""

    def __init__(self, inner: BodyReader, digest: Hasher) -> None:
        self._inner = inner
        self._digest = digest

    @property
    def remaining(self) -> int:
        return self._inner.remaining

    def read(self, n: int = -1, /) -> bytes:
        data = self._inner.read(n)
        self._digest.update(data)
        return data

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        count = self._inner.readinto(buffer)
        self._digest.update(memoryview(buffer)[:count])
        return count

    def finish(self) -> None:
        while True:
            data = self._inner.read(1 << 20)
            if not data:
                return
            self._digest.update(data)
