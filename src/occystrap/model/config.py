"""ImageConfig: the config blob's exact bytes plus typed views and copy-on-write edits."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from ..errors import MalformedInput
from .descriptor import Platform
from .digest import Digest
from .jsonfile import dump_canonical, load_object


@dataclass(frozen=True)
class ImageConfig:
    """An image configuration. ``raw`` is authoritative; edits produce a new object."""

    raw: bytes

    @classmethod
    def parse(cls, raw: bytes, what: str = "image config") -> ImageConfig:
        cfg = cls(raw)
        obj = load_object(raw, what)
        rootfs = obj.get("rootfs")
        if rootfs is not None:
            if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
                raise MalformedInput(f"{what} has rootfs.type other than 'layers'")
            ids = rootfs.get("diff_ids", [])
            if not isinstance(ids, list):
                raise MalformedInput(f"{what} has a malformed rootfs.diff_ids")
            try:
                [Digest.parse(d) for d in ids]
            except Exception:
                raise MalformedInput(f"{what} has a malformed diff_id") from None
        object.__setattr__(cfg, "_obj", obj)
        return cfg

    @cached_property
    def obj(self) -> dict[str, Any]:
        cached = self.__dict__.get("_obj")
        return cached if cached is not None else load_object(self.raw, "image config")

    @cached_property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw)

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def diff_ids(self) -> tuple[Digest, ...]:
        rootfs = self.obj.get("rootfs") or {}
        return tuple(Digest.parse(d) for d in rootfs.get("diff_ids", []))

    @property
    def history(self) -> list[dict[str, Any]]:
        hist = self.obj.get("history")
        return [h for h in hist if isinstance(h, dict)] if isinstance(hist, list) else []

    def layer_history(self) -> list[dict[str, Any] | None]:
        """History entries that made a layer, in layer order (None when history is short)."""
        made = [h for h in self.history if not h.get("empty_layer")]
        ids = self.diff_ids
        return [made[i] if i < len(made) else None for i in range(len(ids))]

    @property
    def created(self) -> str | None:
        value = self.obj.get("created")
        return value if isinstance(value, str) else None

    @property
    def platform(self) -> Platform:
        return Platform(
            str(self.obj.get("os") or "linux"),
            str(self.obj.get("architecture") or "amd64"),
            str(self.obj.get("variant") or ""),
        )

    @property
    def container_config(self) -> dict[str, Any]:
        cfg = self.obj.get("config")
        return cfg if isinstance(cfg, dict) else {}

    def edit(self, fn: Callable[[dict[str, Any]], None]) -> ImageConfig:
        """A new config: ``fn`` mutates a deep copy; unchanged content keeps the exact bytes."""
        obj = copy.deepcopy(self.obj)
        fn(obj)
        if obj == self.obj:
            return self
        return ImageConfig.parse(dump_canonical(obj))

    def with_diff_ids(self, diff_ids: Sequence[Digest]) -> ImageConfig:
        def set_ids(obj: dict[str, Any]) -> None:
            rootfs = obj.get("rootfs")
            if not isinstance(rootfs, dict):  # absent, or null in the source
                rootfs = obj["rootfs"] = {}
            rootfs["type"] = "layers"
            rootfs["diff_ids"] = [str(d) for d in diff_ids]

        return self.edit(set_ids)


def rfc3339(epoch: int) -> str:
    """Seconds since the epoch as the RFC 3339 UTC string image configs use."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
