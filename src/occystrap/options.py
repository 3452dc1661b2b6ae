"""Parse ``key=value`` options (URI queries, filter options) into frozen dataclasses.

Each options class is a frozen dataclass; every field has a default and a ``doc``
metadata entry. Types drive parsing: ``bool`` accepts true/false/yes/no/1/0, ``int``
accepts integers only (so ``ts=1`` stays the integer 1), ``str`` is taken verbatim,
``tuple[str, ...]`` collects a repeated key. Unknown keys are errors that list the
accepted ones. An option declared with ``accepts`` (what a value looks like) refuses an empty
value, e.g. ``?tag=``, instead of taking it as "not given"; elsewhere an empty piece of a
repeated option is dropped.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .errors import InvalidOption

T = TypeVar("T")

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def option(default: Any, doc: str, *, accepts: str | None = None) -> Any:
    """A dataclass field with a default and a one-line description.

    ``accepts`` (e.g. ``"NAME[:TAG]"``) makes an empty value an error that says so.
    """
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata={"doc": doc, "accepts": accepts})


def parse_options(cls: type[T], pairs: Iterable[tuple[str, str]], what: str) -> T:
    """Build ``cls`` from ``(key, value)`` pairs; raise InvalidOption on anything wrong."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for raw_key, value in pairs:
        key = raw_key.strip().replace("-", "_")
        if key not in fields:
            accepted = ", ".join(sorted(fields)) or "none"
            raise InvalidOption(f"{what}: unknown option {raw_key!r} (accepted: {accepted})")
        kind = hints[key]
        accepts = fields[key].metadata.get("accepts")
        if accepts and not value.strip():
            raise InvalidOption(f"{what}: option {raw_key!r} is empty; expected {accepts}")
        if _is_tuple(kind):
            values[key] = (*values.get(key, ()), value)
        elif key in values:
            raise InvalidOption(f"{what}: option {raw_key!r} given twice")
        else:
            values[key] = _convert(kind, value, f"{what}: option {raw_key!r}")
    return cls(**values)


def describe(cls: type[Any]) -> list[tuple[str, str, str]]:
    """(name, default, doc) for each option, for help texts."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else ""
        if isinstance(default, tuple):
            default = ",".join(default) if default else "-"
        elif isinstance(default, bool):
            default = str(default).lower()
        elif default is None:
            default = "-"
        out.append((f.name, str(default), str(f.metadata.get("doc", ""))))
    return out


def split_pairs(text: str, what: str, sep: str = ",") -> list[tuple[str, str]]:
    """``a=1,b=2`` → pairs. A piece without ``=`` continues the previous value, so
    ``pattern=*.pyc,*.pyo`` gives one value ``*.pyc,*.pyo`` for a str option and two
    patterns for a repeated option (see :func:`expand_lists`)."""
    pairs: list[tuple[str, str]] = []
    if not text:
        return pairs
    for piece in text.split(sep):
        if "=" in piece:
            key, value = piece.split("=", 1)
            if not key.strip():
                raise InvalidOption(f"{what}: empty option name in {text!r}")
            pairs.append((key.strip(), value))
        elif pairs:
            key, value = pairs[-1]
            pairs[-1] = (key, value + sep + piece)
        elif piece.strip():
            raise InvalidOption(f"{what}: expected key=value, got {piece!r}")
    return pairs


def expand_lists(
    cls: type[Any], pairs: list[tuple[str, str]], sep: str = ","
) -> list[tuple[str, str]]:
    """Split comma-joined values of repeated (tuple) options into separate pairs.

    Empty pieces are dropped, except for an option declared with ``accepts``: those are
    kept for :func:`parse_options` to refuse."""
    hints = typing.get_type_hints(cls)
    strict = {f.name for f in dataclasses.fields(cls) if f.metadata.get("accepts")}
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        name = key.strip().replace("-", "_")
        kind = hints.get(name)
        if kind is not None and _is_tuple(kind):
            out.extend((key, v) for v in value.split(sep) if v or name in strict)
        else:
            out.append((key, value))
    return out


def _is_tuple(kind: Any) -> bool:
    return typing.get_origin(kind) is tuple


def _convert(kind: Any, value: str, what: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value == "" and len(args) != len(typing.get_args(kind)):
            return None
        kind = args[0]
    if kind is bool:
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise InvalidOption(f"{what} must be true or false, not {value!r}")
    if kind is int:
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise InvalidOption(f"{what} must be an integer, not {value!r}") from None
    if kind is str:
        return value
    raise TypeError(f"unsupported option type {kind!r}")


def as_pairs(mapping: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, vs in mapping.items() for v in vs]
