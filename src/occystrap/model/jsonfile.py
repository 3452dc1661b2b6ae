"""Strict JSON loading of small documents (manifests, configs, manifest.json) with a size cap."""

from __future__ import annotations

import json
from typing import Any

from ..errors import LimitExceeded, MalformedInput

#: Registries must accept manifests of at least 4 MiB; configs can be larger (history).
MAX_JSON_BYTES = 64 * 1024 * 1024


def load_json(raw: bytes, what: str, limit: int = MAX_JSON_BYTES) -> Any:
    if len(raw) > limit:
        raise LimitExceeded(f"{what} is {len(raw)} bytes, over the {limit}-byte limit")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, a 5000-digit number...
        raise MalformedInput(f"{what} is not valid JSON: {_short(e)}") from None


def load_object(raw: bytes, what: str, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    obj = load_json(raw, what, limit)
    if not isinstance(obj, dict):
        raise MalformedInput(f"{what} is not a JSON object")
    return obj


def dump_canonical(obj: Any) -> bytes:
    """Compact, key-order preserving serialisation used for everything we generate."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone "\\ud800" escape read from the input
        raise MalformedInput("JSON text holds a lone UTF-16 surrogate (not Unicode)") from None


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Go and others refuse them): bad input."""
    raise ValueError(f"{name} is not a JSON value")


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:160]
