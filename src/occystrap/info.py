"""describe(): what ``occystrap info`` reports about an image, as a JSON-ready dict.

Nothing here reads a layer: sizes and digests come from descriptors, the manifest, the
index and the config, so ``info`` on a registry, a layout or a seekable archive downloads
no layer. The dict's shape is ``docs/info.schema.json`` (field meanings in ``docs/info.md``)
and is kept stable: every key is always present (null when the source cannot say), and
``schema_version`` changes when a field changes meaning.
"""

from __future__ import annotations

from typing import Any

from .image import Image, Layer
from .model.manifest import Index
from .model.media_types import is_index, layer_compression

SCHEMA_VERSION = 1


def describe(image: Image) -> dict[str, Any]:
    config = image.config
    cc = config.container_config
    manifest = image.manifest
    layers = [_layer(image, layer) for layer in image.layers]
    stored = [entry["size"] for entry in layers]
    plain = [entry["uncompressed_size"] for entry in layers]
    platform = config.platform
    config_desc = manifest.config if manifest is not None else None
    return {
        "schema_version": SCHEMA_VERSION,
        "reference": image.reference,
        "source": image.source_label,
        "name": image.name,
        "tag": image.tag,
        "manifest_digest": str(manifest.digest) if manifest else None,
        "manifest_media_type": manifest.media_type if manifest else None,
        "manifest_size": len(manifest.raw) if manifest else None,
        "annotations": dict(manifest.annotations or {}) if manifest else {},
        "index_digest": str(image.index.digest) if image.index else None,
        "index_media_type": image.index.media_type if image.index else None,
        "platforms": _platforms(image.index, image) if image.index else None,
        "platform": str(platform),
        "os": platform.os,
        "architecture": platform.architecture,
        "variant": platform.variant or None,
        "created": config.created,
        "author": _str(config.obj.get("author")),
        "config_digest": str(config.digest),
        "config_size": config.size,
        "config_media_type": config_desc.media_type if config_desc else None,
        "layer_count": len(layers),
        "total_size": _total(stored),
        "total_uncompressed_size": _total(plain),
        "layers": layers,
        "history_count": len(config.history),
        "empty_layer_count": sum(1 for h in config.history if h.get("empty_layer")),
        "history": [_history(h) for h in config.history],
        "entrypoint": _str_list(cc.get("Entrypoint")),
        "cmd": _str_list(cc.get("Cmd")),
        "env": _str_list(cc.get("Env")) or [],
        "user": _str(cc.get("User")) or "",
        "working_dir": _str(cc.get("WorkingDir")) or "",
        "labels": _str_map(cc.get("Labels")),
        "exposed_ports": sorted(_keys(cc.get("ExposedPorts"))),
        "volumes": sorted(_keys(cc.get("Volumes"))),
        "stop_signal": _str(cc.get("StopSignal")),
        "healthcheck": cc.get("Healthcheck") if isinstance(cc.get("Healthcheck"), dict) else None,
    }


def _layer(image: Image, layer: Layer) -> dict[str, Any]:
    d = layer.descriptor
    compression = layer.compression or layer_compression(layer.media_type)
    hist = layer.history
    if hist is None:
        made = image.config.layer_history()
        hist = made[layer.index] if layer.index < len(made) else None
    return {
        "index": layer.index,
        "digest": str(d.digest) if d else None,
        "size": d.size if d else None,
        "uncompressed_size": d.size if d and compression == "none" else None,
        "media_type": layer.media_type,
        "compression": compression,
        "diff_id": str(layer.diff_id) if layer.diff_id else None,
        "created_by": _str((hist or {}).get("created_by")),
        "created": _str((hist or {}).get("created")),
        "comment": _str((hist or {}).get("comment")),
        "urls": list(d.urls) if d and d.urls else [],
    }


def _platforms(index: Index, image: Image) -> list[dict[str, Any]]:
    chosen = image.manifest.digest if image.manifest is not None else None
    out = []
    for d in index.manifests:
        ann = d.annotations or {}
        attestation = ann.get("vnd.docker.reference.type") == "attestation-manifest" or (
            d.platform is not None and d.platform.os == "unknown"
        )
        out.append(
            {
                "platform": str(d.platform) if d.platform is not None else None,
                "digest": str(d.digest),
                "media_type": d.media_type,
                "size": d.size,
                "index": is_index(d.media_type),
                "attestation": attestation,
                "selected": d.digest == chosen,
            }
        )
    return out


def _history(h: dict[str, Any]) -> dict[str, Any]:
    return {
        "created": _str(h.get("created")),
        "created_by": _str(h.get("created_by")),
        "comment": _str(h.get("comment")),
        "author": _str(h.get("author")),
        "empty_layer": h.get("empty_layer") is True,
    }


def _total(sizes: list[int | None]) -> int | None:
    return sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _str_list(value: Any) -> list[str] | None:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else None


def _str_map(value: Any) -> dict[str, str]:
    return {k: v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else {}


def _keys(value: Any) -> list[str]:
    return [str(k) for k in value] if isinstance(value, dict) else []


def render_text(info: dict[str, Any]) -> str:
    lines = [
        f"Image:          {info['reference']}",
        f"Manifest:       {info['manifest_digest'] or '-'} ({info['manifest_media_type'] or 'none'})",
    ]
    if info["index_digest"]:
        lines.append(f"Index:          {info['index_digest']} ({info['index_media_type']})")
        for p in info["platforms"] or []:
            marks = [m for m in ("selected", "attestation", "index") if p[m]]
            extra = f" ({', '.join(marks)})" if marks else ""
            lines.append(f"  platform      {p['platform'] or '-':<20} {p['digest']}{extra}")
    total = info["total_size"]
    plain = info["total_uncompressed_size"]
    lines += [
        f"Platform:       {info['platform']}",
        f"Created:        {info['created'] or '-'}",
        f"Config:         {info['config_digest']} ({info['config_size']} bytes)",
        f"Layers:         {info['layer_count']}"
        + (f", {_size(total)} stored" if total is not None else "")
        + (f", {_size(plain)} uncompressed" if plain is not None else ""),
    ]
    lines.append(
        f"  {'#':>2}  {'digest':<19}  {'size':>10}  {'compr':<5}  {'diff_id':<19}  created by"
    )
    for layer in info["layers"]:
        lines.append(
            f"  {layer['index']:>2}  {_short(layer['digest']):<19}  {_size(layer['size']):>10}  "
            f"{layer['compression'] or '?':<5}  {_short(layer['diff_id']):<19}  "
            f"{_clip(layer['created_by'] or '', 60)}"
        )
    lines += [
        f"History:        {info['history_count']} entries ({info['empty_layer_count']} empty)",
        f"Entrypoint:     {_argv(info['entrypoint'])}",
        f"Cmd:            {_argv(info['cmd'])}",
        f"User:           {info['user'] or '-'}",
        f"WorkingDir:     {info['working_dir'] or '-'}",
        f"Ports:          {', '.join(info['exposed_ports']) or '-'}",
        f"Volumes:        {', '.join(info['volumes']) or '-'}",
    ]
    if info["stop_signal"]:
        lines.append(f"StopSignal:     {info['stop_signal']}")
    for env in info["env"]:
        lines.append(f"Env:            {env}")
    for key, value in sorted(info["labels"].items()):
        lines.append(f"Label:          {key}={value}")
    return "\n".join(lines)


def _argv(value: list[str] | None) -> str:
    return "-" if value is None else " ".join(_quote(v) for v in value) or '""'


def _quote(text: str) -> str:
    return text if text and all(c.isalnum() or c in "/-_.=:,+@%" for c in text) else repr(text)


def _short(digest: str | None) -> str:
    return digest[:19] if digest else "-"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
