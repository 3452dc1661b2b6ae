"""Digest: the only way a content address travels through occystrap."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidReference

_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_KNOWN = {"sha256": 64, "sha512": 128}


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """``algorithm:encoded`` as in the OCI descriptor spec."""

    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate ``text``; raise :class:`InvalidReference` when malformed."""
        if not isinstance(text, str) or not _GRAMMAR.match(text):
            raise InvalidReference(f"malformed digest {str(text)[:80]!r}")
        algorithm, encoded = text.split(":", 1)
        length = _KNOWN.get(algorithm)
        if length is not None and (len(encoded) != length or not _is_lower_hex(encoded)):
            raise InvalidReference(f"malformed {algorithm} digest {text[:80]!r}")
        return cls(algorithm, encoded)

    @classmethod
    def sha256_hex(cls, hexdigest: str) -> Digest:
        return cls.parse(f"sha256:{hexdigest}")

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        h = hashlib.new(algorithm)
        h.update(data)
        return cls(algorithm, h.hexdigest())

    @property
    def supported(self) -> bool:
        return self.algorithm in _KNOWN

    def hasher(self) -> Any:
        """A new hashlib object for this digest's algorithm."""
        if not self.supported:
            raise InvalidReference(f"unsupported digest algorithm {self.algorithm!r}")
        return hashlib.new(self.algorithm)

    @property
    def hex(self) -> str:
        return self.encoded

    @property
    def short(self) -> str:
        return self.encoded[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


def _is_lower_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


class Hasher:
    """Running digest and byte count of a stream, fed chunk by chunk."""

    __slots__ = ("_h", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._h.update(chunk)
        self.size += len(chunk)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._h.hexdigest())
