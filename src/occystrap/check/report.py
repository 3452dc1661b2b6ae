"""The results of ``occystrap check``: every check id with its fixed severity, and the report.

Each id has one severity, listed in :data:`CHECKS` (and in ``docs/check.md``). A report keeps
at most :data:`MAX_LISTED` results of one id per layer (per image for the rest) and then one
more of the same id saying how many were left out, so a layer with a million duplicate paths
does not produce a million lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


_E, _W, _I = Severity.ERROR, Severity.WARNING, Severity.INFO

#: id -> (severity, one-line meaning). docs/check.md lists the same ids.
CHECKS: dict[str, tuple[Severity, str]] = {
    # documents
    "layout-version": (_E, "oci-layout is missing imageLayoutVersion 1.0.0"),
    "json-invalid": (_E, "a manifest, index or config blob is not a JSON object"),
    "schema-version": (_E, "a manifest or index has a schemaVersion other than 2"),
    "descriptor": (_E, "a descriptor lacks mediaType/digest/size or has a malformed field"),
    "descriptor-data": (_E, "a descriptor's embedded data does not match its digest or size"),
    "index-schema": (_E, "an index is structurally invalid (manifests not a list, annotations)"),
    "manifest-schema": (_E, "a manifest is structurally invalid (config or layers missing)"),
    "config-schema": (_E, "an image config is structurally invalid (required field or type)"),
    "media-type": (_E, "a document's mediaType is wrong for it or contradicts its descriptor"),
    "platform": (_E, "an index entry's platform lacks a string os or architecture"),
    "artifact-type": (_E, "a manifest with the empty config type has no artifactType"),
    "rootfs-type": (_E, "rootfs.type of the image config is not 'layers'"),
    "layer-count": (_E, "the manifest's layers and the config's diff_ids differ in number"),
    "history-count": (_E, "the non-empty history entries and the layers differ in number"),
    "blob-missing": (_E, "a blob named by the image (manifest, config, layer) is absent"),
    "manifest-digest": (_E, "a manifest or index blob does not match its descriptor's digest"),
    "manifest-size": (_E, "a manifest or index blob does not match its descriptor's size"),
    "config-digest": (_E, "the config blob does not match the digest it is referenced by"),
    "config-size": (_E, "the config blob does not match its descriptor's size"),
    "layer-digest": (_E, "a layer's stored bytes do not match the digest they are referenced by"),
    "layer-size": (_E, "a layer's stored bytes do not match its descriptor's size"),
    "compression": (_E, "a layer's compression (magic bytes) contradicts its media type"),
    "tar-format": (_E, "a layer is not a readable (compressed) tar stream"),
    "diff-id": (_E, "a decompressed layer does not match its diff_id in the config"),
    "whiteout": (_E, "an invalid whiteout name ('.wh.' with nothing, '.' or '..' after it)"),
    "duplicate-path": (_E, "one layer holds the same path twice"),
    "unsafe-path": (
        _E,
        "a member or hard-link target escapes the root, or a member is below a symlink",
    ),
    # warnings
    "media-type-missing": (_W, "a manifest or index has no mediaType field"),
    "mixed-media-types": (_W, "a manifest mixes Docker and OCI media types"),
    "layer-media-type": (_W, "a layer media type is unknown; its content is not checked as a tar"),
    "digest-algorithm": (_W, "a digest uses an algorithm occystrap cannot verify"),
    "platform-missing": (_W, "an image entry of a multi-platform index has no platform"),
    "platform-mismatch": (_W, "an index entry's platform differs from the image config's"),
    "index-child": (_W, "an index entry's manifest is not in the source and was not checked"),
    "no-layers": (_W, "a manifest lists no layers"),
    "created-format": (_W, "a created timestamp is not RFC 3339"),
    "oci-layout": (_W, "a docker-save archive's OCI index.json does not describe its image"),
    "whiteout-content": (_W, "a whiteout entry is not an empty regular file"),
    "whiteout-aufs": (_W, "an AUFS '.wh..wh.' name other than the opaque marker"),
    "absolute-path": (_W, "a layer member's path is absolute"),
    "tar-timestamp": (_W, "a layer member has a negative (pre-1970) mtime"),
    "tar-permissions": (_W, "a layer member is setuid/setgid and world-writable"),
    "check-limit": (_W, "duplicate-path detection stopped at its per-layer bound"),
    # information
    "format": (_I, "the manifest family or archive flavour of the image"),
    "nondistributable": (_I, "a non-distributable (foreign) layer"),
    "zstd-compat": (_I, "a zstd layer: older runtimes cannot read it"),
    "history-empty": (_I, "the image config has no history"),
    "artifact": (_I, "an artifact or unknown media type: not checked as an image"),
    "not-checked": (_I, "something this source or mode cannot check"),
}

#: Results of one id kept per layer (or per image); the rest are counted.
MAX_LISTED = 10


@dataclass(frozen=True)
class Result:
    severity: Severity
    id: str
    message: str
    layer: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": str(self.severity),
            "id": self.id,
            "message": self.message,
        }
        if self.layer is not None:
            out["layer"] = self.layer
        return out


@dataclass
class Report:
    """What one ``check`` found. ``mode`` is 'full' or 'metadata'."""

    reference: str
    mode: str
    results: list[Result] = field(default_factory=list)
    _counts: dict[tuple[str, int | None], int] = field(default_factory=dict, repr=False)

    def add(self, check_id: str, message: str, layer: int | None = None) -> None:
        severity = CHECKS[check_id][0]
        key = (check_id, layer)
        seen = self._counts.get(key, 0) + 1
        self._counts[key] = seen
        if seen <= MAX_LISTED:
            self.results.append(Result(severity, check_id, " ".join(message.split()), layer))

    def finish(self) -> Report:
        """Append one result per id that had more than MAX_LISTED (call once, at the end)."""
        for (check_id, layer), seen in self._counts.items():
            if seen > MAX_LISTED:
                more = seen - MAX_LISTED
                text = f"... and {more} more [{check_id}] result(s) not listed"
                self.results.append(Result(CHECKS[check_id][0], check_id, text, layer))
        self._counts = {}
        return self

    def count(self, severity: Severity) -> int:
        return sum(1 for r in self.results if r.severity is severity)

    @property
    def errors(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        return self.count(Severity.WARNING)

    @property
    def infos(self) -> int:
        return self.count(Severity.INFO)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def ids(self, severity: Severity | None = None) -> set[str]:
        return {r.id for r in self.results if severity is None or r.severity is severity}

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "mode": self.mode,
            "errors": self.errors,
            "warnings": self.warnings,
            "infos": self.infos,
            "results": [r.to_json() for r in self.results],
        }

    def render_text(self) -> str:
        lines = [f"Checking {self.reference} ({self.mode})"]
        for severity, title in (
            (Severity.ERROR, "Errors"),
            (Severity.WARNING, "Warnings"),
            (Severity.INFO, "Info"),
        ):
            chosen = [r for r in self.results if r.severity is severity]
            if not chosen:
                continue
            lines.append(f"{title}:")
            for r in chosen:
                where = f"layer {r.layer}: " if r.layer is not None else ""
                lines.append(f"  [{r.id}] {where}{r.message}")
        lines.append(
            f"Check complete ({self.mode}): {self.errors} error(s), {self.warnings} warning(s)"
        )
        return "\n".join(lines)
