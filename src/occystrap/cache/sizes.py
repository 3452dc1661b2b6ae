"""Byte sizes as people write them: ``10G``, ``500MB``, ``1.5GiB``, ``1048576``."""

from __future__ import annotations

import re

from ..errors import InvalidOption

#: The layer cache's size bound unless told otherwise (10 GB).
DEFAULT_MAX_SIZE = 10 * 1000**3

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes for ``text`` (decimal units K/M/G/T, binary KiB/MiB/GiB/TiB); InvalidOption if bad."""
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise InvalidOption(f"not a size: {text!r} (e.g. 10G, 500MB, 2GiB, 1048576)")
    return int(float(m.group(1)) * _UNITS[unit])


def format_size(n: float) -> str:
    """``1.5 GB``, ``12.0 MB``, ``512 B`` (decimal units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
