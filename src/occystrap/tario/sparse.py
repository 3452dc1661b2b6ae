"""Sparse tar members: their maps (GNU ``S``, PAX 0.0/0.1/1.0) and their expanded bodies.

A sparse member stores only its data regions; the reader hands it on as a regular file
whose holes read as zeros. The expanded size is capped: by default a member may expand
to at most ``64 * stored + 1 GiB`` bytes (:func:`default_limit`), so a few bytes of
archive cannot make a filter or an output write terabytes of zeros. A caller can set an
absolute limit instead (``iter_entries(..., max_sparse_size=N)``); over it the reader
raises ``LimitExceeded``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import LimitExceeded
from .fields import MAX_SIZE, num, pax_int
from .source import BLOCK, Body, BodyBase

MAX_SPARSE = 100_000  # sparse map entries of one member
RATIO = 64
SLACK = 1 << 30

SparseMap = list[tuple[int, int]]


def default_limit(stored: int) -> int:
    """The largest expanded size allowed for a member storing ``stored`` data bytes."""
    return RATIO * stored + SLACK


def old_gnu_map(block: bytes, read_block: Callable[[], bytes]) -> tuple[SparseMap, int]:
    """Map and real size of an old GNU ``S`` header; ``read_block`` gives extension blocks.

    Raises ValueError for a bad number and LimitExceeded for too many entries.
    """
    sparse_map: SparseMap = []
    real_size = num(block[483:495])
    area, count, extended = block[386:482], 4, block[482]
    while True:
        for i in range(0, 24 * count, 24):
            if area[i] == 0:
                break
            sparse_map.append((num(area[i : i + 12]), num(area[i + 12 : i + 24])))
        if len(sparse_map) > MAX_SPARSE:
            raise LimitExceeded(f"sparse map over {MAX_SPARSE} entries")
        if not extended:
            return sparse_map, real_size
        area = read_block()
        count, extended = 21, area[504]


def pax_map(pax: dict[str, str], pairs: list[str], body: Body) -> SparseMap:
    """Map of a PAX sparse member (0.1 record, 0.0 records or 1.0 data prefix).

    Raises ValueError (or UnicodeDecodeError) for a bad map and LimitExceeded for too
    many entries. For 1.0, the map is read from ``body``, which is left at the data.
    """
    if pax.get("GNU.sparse.major") == "1" and pax.get("GNU.sparse.minor") == "0":
        numbers: list[int] = []
        pending = b""
        count = None
        while count is None or len(numbers) < 2 * count:
            line, newline, rest = pending.partition(b"\n")
            if newline:
                pending = rest
                if count is None:
                    count = pax_int(line.decode("ascii"))
                    if count > MAX_SPARSE:
                        raise LimitExceeded(f"sparse map over {MAX_SPARSE} entries")
                else:
                    numbers.append(pax_int(line.decode("ascii")))
            elif len(pending) > 64 or body.remaining < BLOCK:
                raise ValueError("bad sparse map")
            else:
                pending += body.read(BLOCK)
    elif "GNU.sparse.map" in pax:
        numbers = [pax_int(n) for n in pax["GNU.sparse.map"].split(",")]
    else:
        numbers = [pax_int(n) for n in pairs]
    if len(numbers) % 2 or len(numbers) > 2 * MAX_SPARSE:
        raise ValueError("bad sparse map")
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def check_map(sparse_map: SparseMap, real_size: int | None, stored: int, limit: int | None) -> int:
    """Validate a map against the stored data and the size cap; return the real size.

    The regions must be in order, not overlap, lie inside the real size and add up to
    ``stored``. ValueError when they do not; LimitExceeded when the real size is over
    ``limit`` (or over :func:`default_limit` of ``stored`` when ``limit`` is None).
    """
    if real_size is None or not 0 <= real_size <= MAX_SIZE:
        raise ValueError("bad sparse map")
    if sum(n for _, n in sparse_map) != stored:
        raise ValueError("bad sparse map")
    end = 0
    for offset, length in sparse_map:
        if offset < end or length < 0 or offset + length > real_size:
            raise ValueError("bad sparse map")
        end = offset + length
    cap = default_limit(stored) if limit is None else limit
    if real_size > cap:
        raise LimitExceeded(
            f"sparse tar member expands to {real_size} bytes from {stored} stored (limit {cap})"
        )
    return real_size


class SparseBody(BodyBase):
    """A sparse member expanded: stored regions at their offsets, zeros in the holes."""

    __slots__ = ("_body", "_map", "_pos")

    def __init__(self, body: Body, sparse_map: SparseMap, real_size: int) -> None:
        self._body = body
        self._map = sparse_map[::-1]  # popped from the end as regions are passed
        self._pos = 0
        self.remaining = real_size

    def read(self, n: int = -1, /) -> bytes:
        if n < 0 or n > self.remaining:
            n = self.remaining
        parts = []
        self.remaining -= n
        while n > 0:
            pos = self._pos
            offset, length = self._map[-1] if self._map else (pos + n, 0)
            if pos < offset:
                take = min(n, offset - pos)
                parts.append(bytes(take))
            elif pos < offset + length:
                take = min(n, offset + length - pos)
                parts.append(self._body.read(take))
            else:
                self._map.pop()
                continue
            self._pos = pos + take
            n -= take
        return b"".join(parts)

    def abandon(self) -> int:
        self.remaining = 0
        return self._body.abandon()
