"""Resource bounds the engine applies to input it does not trust.

**Decompression bombs.** A compressed layer may expand to at most
``max(EXPANSION_FLOOR, EXPANSION_RATIO * stored size)`` bytes; beyond that the decompressing
reader raises ``LimitExceeded`` (and never produces a byte past the limit). Real layers stay
far below 250:1 (text compresses about 4-10:1); gzip cannot exceed about 1032:1 and zstd
goes much further, so the ratio is what stops a bomb, and the 1 GiB floor keeps small,
highly compressible layers (a big file of zeros) working. A layer whose stored size is not
known up front is not capped here. A docker-save archive compressed as a whole
(``tar://image.tar.gz``) counts as one layer: its stored size is the file's size; read from
a pipe (``tar://-``) its size is unknown, so the limit is applied as it streams, to the
compressed bytes read so far (a prefix that expands past both the floor and the ratio is
refused even if the rest would have brought the ratio down: read such an archive from a
file). Layers inside an archive are capped by their own stored sizes.

**Blobs of unknown size.** A schema 1 manifest gives no layer sizes, so such a layer is
downloaded (and spooled to a temporary file) up to :data:`MAX_UNSIZED_BLOB` bytes; a longer
one is refused with ``LimitExceeded`` (schema 1 images predate layers anywhere near it).
Sparse tar members have their own cap
(:mod:`occystrap.tario.sparse`); JSON documents theirs (:mod:`occystrap.model.jsonfile`).
"""

from __future__ import annotations

EXPANSION_RATIO = 250
EXPANSION_FLOOR = 1 << 30
MAX_UNSIZED_BLOB = 16 << 30


def expansion_limit(stored_size: int | None) -> int | None:
    """The most bytes a layer of ``stored_size`` compressed bytes may decompress to."""
    if stored_size is None:
        return None
    return max(EXPANSION_FLOOR, EXPANSION_RATIO * stored_size)
