"""Members of a streamed archive kept until someone asks for them.

Small members stay in memory while the total stays under a budget; the rest are spooled
to temp files. Every held member's digest is known, so a layer can be found by content.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

from ...blobio.readers import read_full
from ...blobio.spool import SpooledBlob, spool
from ...model.digest import Digest
from ...tario.entry import BodyReader
from .members import Member

HEAD = 4
SMALL = 1 << 20
MEMORY_BUDGET = 32 << 20


@dataclass
class Held:
    member: Member
    data: bytes | None
    blob: SpooledBlob | None
    digest: Digest
    head: bytes

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.blob is not None
        return self.blob.open()

    def close(self) -> None:
        if self.blob is not None:
            self.blob.close()


class HeldMembers:
    """Held members by name, and by digest."""

    def __init__(self, temp_dir: str | None) -> None:
        self._temp_dir = temp_dir
        self._by_name: dict[str, Held] = {}
        self._by_digest: dict[Digest, str] = {}
        self._memory = 0

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> Held | None:
        return self._by_name.get(name)

    def with_digest(self, digest: Digest | None) -> Held | None:
        name = self._by_digest.get(digest) if digest is not None else None
        return self._by_name[name] if name is not None else None

    def hold(self, member: Member, body: BodyReader) -> Held:
        """Read ``body`` (the whole member) into memory or a spool file."""
        if member.size <= SMALL and self._memory + member.size <= MEMORY_BUDGET:
            data = read_full(body, member.size)
            held = Held(member, data, None, Digest.of_bytes(data), data[:HEAD])
            self._memory += len(data)
        else:
            blob = spool(body, self._temp_dir)
            with blob.open() as f:
                held = Held(member, None, blob, blob.digest, f.read(HEAD))
        self.release(member.name)
        self._by_name[member.name] = held
        self._by_digest.setdefault(held.digest, member.name)
        return held

    def release(self, name: str) -> None:
        held = self._by_name.pop(name, None)
        if held is None:
            return
        if self._by_digest.get(held.digest) == name:
            del self._by_digest[held.digest]
            others = [n for n, h in self._by_name.items() if h.digest == held.digest]
            if others:
                self._by_digest[held.digest] = others[0]
        if held.data is not None:
            self._memory -= len(held.data)
        held.close()

    def close(self) -> None:
        for name in list(self._by_name):
            self.release(name)
