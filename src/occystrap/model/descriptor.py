"""Descriptor and Platform: immutable values; JSON round trips keep unknown fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidOption, InvalidReference, MalformedInput
from .digest import Digest

# The image-spec's variant defaults: an entry without a variant means this one.
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7", "amd64": ""}
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]`` as docker writes it, e.g. ``linux/arm64/v8``."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidOption(
                f"bad platform {text!r}; expected os/arch[/variant], e.g. linux/arm64/v8"
            )
        arch = _ARCH_ALIASES.get(parts[1], parts[1])
        return cls(parts[0], arch, parts[2] if len(parts) == 3 else "")

    @classmethod
    def from_json(cls, obj: Any) -> Platform:
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("os"), str)
            or not isinstance(obj.get("architecture"), str)
        ):
            raise MalformedInput("platform needs string 'os' and 'architecture'")
        feats = obj.get("os.features") or ()
        return cls(
            obj["os"],
            obj["architecture"],
            str(obj.get("variant") or ""),
            str(obj.get("os.version") or ""),
            tuple(str(f) for f in feats) if isinstance(feats, list) else (),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def effective_variant(self) -> str:
        return self.variant or _DEFAULT_VARIANTS.get(self.architecture, "")

    def matches(self, candidate: Platform) -> bool:
        """Does ``candidate`` (an index entry) satisfy this requested platform?"""
        if self.os != candidate.os or self.architecture != candidate.architecture:
            return False
        if self.variant and self.effective_variant() != candidate.effective_variant():
            return False
        return not self.os_version or self.os_version == candidate.os_version

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


DEFAULT_PLATFORM = Platform("linux", "amd64")


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] | None = None
    platform: Platform | None = None
    urls: tuple[str, ...] | None = None
    artifact_type: str | None = None
    data: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, what: str = "descriptor") -> Descriptor:
        if not isinstance(obj, dict):
            raise MalformedInput(f"{what} is not a JSON object")
        media_type = obj.get("mediaType")
        size = obj.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise MalformedInput(f"{what} has no mediaType")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise MalformedInput(f"{what} has a bad size {size!r}")
        try:
            digest = Digest.parse(obj.get("digest", ""))
        except InvalidReference as e:
            raise MalformedInput(f"{what}: {e}") from None
        annotations = obj.get("annotations")
        if annotations is not None and not (
            isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
        ):
            raise MalformedInput(f"{what} has malformed annotations")
        platform = Platform.from_json(obj["platform"]) if obj.get("platform") is not None else None
        urls = obj.get("urls")
        known = {
            "mediaType",
            "digest",
            "size",
            "annotations",
            "platform",
            "urls",
            "artifactType",
            "data",
        }
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=annotations,
            platform=platform,
            urls=tuple(urls) if isinstance(urls, list) else None,
            artifact_type=obj.get("artifactType"),
            data=obj.get("data"),
            extra={k: v for k, v in obj.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.data is not None:
            out["data"] = self.data
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        out.update(self.extra)
        return out

    @property
    def ref_name(self) -> str | None:
        if not self.annotations:
            return None
        return self.annotations.get("org.opencontainers.image.ref.name")
