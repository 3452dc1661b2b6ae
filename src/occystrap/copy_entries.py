"""The entry side of a layer's route: its stored bytes decompressed, and the count of
tar entries into and out of the filter chain that tells a changed layer from one that
only passed through."""

from __future__ import annotations

from collections.abc import Iterator

from .blobio.compression import decompressing_reader, peek_compression
from .blobio.readers import Reader
from .bounds import expansion_limit
from .filters.base import SourceEnd
from .image import Layer
from .tario.entry import TarEntry
from .tario.reader import TarReader

_END_MARKER = 1024  # what iter_tar_bytes ends an archive with (record size 512)
_MAX_TRAILER = 1 << 20


class ChangeTracker:
    """Counts entries into and out of the filter chain; anything re-encoded, dropped or
    added marks the layer changed."""

    def __init__(self) -> None:
        self.entries_in = 0
        self.entries_out = 0
        self.reencoded = False

    def count_in(self, reader: TarReader, end: SourceEnd) -> Iterator[TarEntry]:
        for entry in reader:
            self.entries_in += 1
            yield entry
        end.entries = self.entries_in
        if reader.total_size is not None:
            end.trailer = 0 if reader.end_offset is None else reader.total_size - reader.end_offset

    def watch_out(self, entries: Iterator[TarEntry]) -> Iterator[TarEntry]:
        for entry in entries:
            self.entries_out += 1
            if entry.raw_header is None:
                self.reencoded = True
            yield entry

    @property
    def changed(self) -> bool:
        return self.reencoded or self.entries_in != self.entries_out

    def keep_trailer(self, chunks: Iterator[bytes], end: SourceEnd) -> Iterator[bytes]:
        """The writer's chunks; an unchanged layer ends as the source did (same zero padding
        after the last member), so its diff_id stays the source's."""
        last: bytes | None = None
        for chunk in chunks:
            if last is not None:
                yield last
            last = chunk
        if last is None:
            return
        trailer = end.trailer
        if (
            not self.changed
            and trailer is not None
            and trailer <= _MAX_TRAILER
            and len(last) >= _END_MARKER
        ):
            last = last[:-_END_MARKER] + bytes(trailer)
        yield last


def decompressed(stream: Reader, layer: Layer) -> tuple[Reader, str]:
    """``stream`` decompressed (its first bytes are read here, the rest when read)."""
    compression, peeked = peek_compression(stream)
    if compression == "none":
        return peeked, "none"
    d = layer.descriptor
    limit = expansion_limit(d.size if d is not None else None)
    what = f"layer {layer.index}"
    return decompressing_reader(peeked, compression, limit=limit, what=what), str(compression)
