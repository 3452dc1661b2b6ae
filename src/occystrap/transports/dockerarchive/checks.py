"""How the stored bytes of a layer are checked while they stream out of an archive.

* a known stored digest (uncompressed: the diff_id; a blob: its name or OCI descriptor)
  is verified with its size;
* a compressed layer whose stored digest nobody recorded (a gzip ``<id>/layer.tar``) is
  decompressed on the side, in a second thread, and its diff_id verified there, so even a
  copy that passes the compressed bytes on unchanged checks what the config claims;
* a layer the plan promised uncompressed that turns out compressed (a stream whose layers
  were named before they were seen) is handed out decompressed and checked by diff_id.

Whatever is decompressed here is capped by :func:`occystrap.bounds.expansion_limit` of the
member's stored size (a decompression bomb raises ``LimitExceeded``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, cast

from ...blobio.compression import Compression, decompressing_reader, detect
from ...blobio.readers import Reader, ReaderBase
from ...blobio.tee import observe_copy
from ...blobio.verify import Expect, VerifyingReader
from ...bounds import expansion_limit
from .reader import LayerRef


@contextmanager
def checked(
    reader: Reader, head: bytes, ref: LayerRef, what: str, stored_size: int | None
) -> Iterator[BinaryIO]:
    """``reader`` (the stored bytes of ``ref``: ``stored_size`` bytes if known, ``head``
    their first bytes), verified."""
    actual = detect(head)
    label = f"layer {ref.index} of {what}"
    limit = expansion_limit(stored_size)
    if ref.compression == "none" and actual is not Compression.NONE and ref.diff_id is not None:
        plain = decompressing_reader(reader, actual, limit=limit, what=label)
        yield cast(
            BinaryIO, VerifyingReader(plain, Expect(ref.diff_id, None), f"{label} (diff_id)")
        )
    elif ref.digest is not None:
        yield cast(BinaryIO, VerifyingReader(reader, Expect(ref.digest, ref.size), label))
    elif ref.diff_id is not None and actual is not Compression.NONE:
        diff_id = ref.diff_id

        def check(stream: BinaryIO) -> None:
            plain = decompressing_reader(stream, actual, limit=limit, what=label)
            VerifyingReader(plain, Expect(diff_id, None), f"{label} (diff_id)").finish()

        with observe_copy(check) as tap:
            yield tap.wrap(cast(BinaryIO, reader))
    else:
        yield cast(BinaryIO, reader)


class CountingReader(ReaderBase):
    """Pass bytes through, counting them (for the run's ``bytes_read``)."""

    def __init__(self, reader: Reader) -> None:
        self._source = reader
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        assert self._source is not None
        data = self._source.read(size)
        self.count += len(data)
        return data
