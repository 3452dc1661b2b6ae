"""The entry side of a layer's route: its stored bytes decompressed, its entries through
the filter chain, and the count of entries into and out of the chain that tells a changed
layer from one that only passed through."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .blobio.compression import decompressing_reader, peek_compression
from .blobio.readers import Reader
from .bounds import expansion_limit
from .filters.base import Filter, LayerView, SourceEnd
from .image import Layer
from .tario.entry import MemberRun, TarEntry
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

    def passed(self, run: MemberRun) -> MemberRun:
        """``run`` went by the chain: its members count as in and out, edited ones as
        re-encoded."""
        self.entries_in += run.members
        self.entries_out += run.members
        self.reencoded = self.reencoded or run.changed > 0
        return run

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


def through_chain(
    reader: TarReader, chain: Sequence[Filter], view: LayerView, tracker: ChangeTracker
) -> Iterator[TarEntry | MemberRun]:
    """The entries of ``reader`` as the filters hand them on, counted by ``tracker``.

    When every filter declares a :class:`~occystrap.filters.base.HeaderEdit`, the simple
    members lying whole in the reader's buffer between two entries skip the chain: they
    come as one :class:`MemberRun`, edited as bytes (a member as an entry costs some
    microseconds; the corpus's 40,000 small files made that most of a rewrite's time).
    Only while every entry taken from the reader has come out of the chain, so the order
    is kept (a filter that drops an entry thus ends the runs).
    """
    entries = tracker.count_in(reader, view.source_end)
    for f in chain:
        entries = f.process(entries, view)
    out = tracker.watch_out(entries)
    # optional for filters from elsewhere; the last one's mtime is the one that stays
    mtimes = [edit.mtime for f in chain if (edit := getattr(f, "header_edit", None))]
    if not chain or len(mtimes) != len(chain):
        yield from out
        return
    mtime = mtimes[-1]
    while True:
        if tracker.entries_in == tracker.entries_out:
            run = reader.simple_run(mtime)
            if run is not None:
                yield tracker.passed(run)
        entry = next(out, None)
        if entry is None:
            return
        yield entry


def decompressed(stream: Reader, layer: Layer) -> tuple[Reader, str]:
    """``stream`` decompressed (its first bytes are read here, the rest when read)."""
    compression, peeked = peek_compression(stream)
    if compression == "none":
        return peeked, "none"
    limit = expansion_limit(layer.stored_size)
    what = f"layer {layer.index}"
    return decompressing_reader(peeked, compression, limit=limit, what=what), str(compression)
