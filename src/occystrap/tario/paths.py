"""Member paths: normalization, escape checks, OCI whiteouts and gitignore-style globs.

Glob semantics (``match(pattern, path)``), on normalized paths (see :func:`normalize`):

* ``*`` matches any run of characters except ``/`` (dot files included); ``?`` one
  character except ``/``; ``[abc]``, ``[a-z]``, ``[!a]``/``[^a]`` one character of (or not
  of) the class, never ``/``; ``\\x`` matches ``x`` literally. An unclosed ``[`` is literal.
* ``**`` as a whole component spans directories: ``**/x`` matches ``x`` at any depth
  (including the top), ``a/**/x`` matches ``a/x``, ``a/b/x``..., ``a/**`` matches
  everything below ``a`` (not ``a`` itself). Elsewhere ``**`` acts like ``*``.
* A pattern with no ``/`` (after dropping a trailing ``/``) matches a path whose last
  component matches it, at any depth (``*.pyc`` matches ``a/b/c.pyc``). A pattern with a
  ``/`` is anchored at the root and matches the whole path (``usr/*/doc``); so is one with
  a leading ``/`` (``/.git`` is the top-level ``.git`` only, as in ``.gitignore``).
* A trailing ``/`` is ignored (the type of the member is not known here).

:func:`matches_or_under` also says yes for everything below a matching path, so excluding
a directory by pattern removes its whole subtree. :func:`glob_test` compiles a pattern once
into a test for paths that are already normalized.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from ..errors import InvalidOption, MalformedInput

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
WHITEOUT_META_PREFIX = ".wh..wh."


def normalize(name: str) -> str:
    """``./a//b/./c/`` -> ``a/b/c``: relative, no empty or ``.`` parts, ``..`` resolved
    lexically where a parent exists (leading ``..`` parts that climb above the root are
    kept, see :func:`is_escaping`). The root itself is ``""``."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def is_escaping(name: str) -> bool:
    """True when ``..`` components climb above the root at some point (``a/../../b``)."""
    depth = 0
    for part in name.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _split(name: str) -> tuple[str, str]:
    path = normalize(name)
    head, _, base = path.rpartition("/")
    return head, base


def is_whiteout(name: str) -> bool:
    """Any ``.wh.``-prefixed name: file whiteout, opaque marker or AUFS metadata."""
    return _split(name)[1].startswith(WHITEOUT_PREFIX)


def is_opaque(name: str) -> bool:
    """True for ``dir/.wh..wh..opq`` (hide every lower-layer child of ``dir``)."""
    return _split(name)[1] == OPAQUE


def whiteout_target(name: str) -> str | None:
    """The normalized path a ``.wh.<name>`` whiteout deletes, or None if ``name`` is not one.

    The opaque marker and other ``.wh..wh.`` (AUFS metadata) names return None; a bare
    ``.wh.`` raises ``MalformedInput`` (invalid per the OCI image spec).
    """
    head, base = _split(name)
    if not base.startswith(WHITEOUT_PREFIX) or base.startswith(WHITEOUT_META_PREFIX):
        return None
    target = base[len(WHITEOUT_PREFIX) :]
    if not target or target in (".", ".."):
        raise MalformedInput(f"invalid whiteout {name!r}")
    return f"{head}/{target}" if head else target


def _translate(pattern: str) -> str:
    """Regex (no anchors) for one normalized glob, per the rules in the module docstring."""
    out: list[str] = []
    parts = pattern.split("/")
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            if last:
                out.append(".+" if index else ".*")  # "a/**": below a; "**": anything
            else:
                out.append("(?:.*/)?")  # zero or more directories
            continue
        out.append(_component(part))
        if not last:
            out.append("/")
    return "".join(out)


def _component(part: str) -> str:
    out: list[str] = []
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        i += 1
        if c == "*":
            while i < n and part[i] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i < n:
            out.append(re.escape(part[i]))
            i += 1
        elif c == "[":
            j = i + 1 if i < n and part[i] in "!^" else i
            j = j + 1 if j < n and part[j] == "]" else j
            close = part.find("]", j)
            if close < 0:
                out.append("\\[")
                continue
            body = part[i:close]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            for special in "\\[&~|":
                body = body.replace(special, "\\" + special)
            out.append(f"(?!/)[{'^' if negate else ''}{body}]")
            i = close + 1
        else:
            out.append(re.escape(c))
    return "".join(out)


def glob_to_regex(pattern: str, *, subtree: bool = False) -> str:
    """A regex (for ``re.fullmatch`` with ``re.DOTALL``) equivalent to :func:`match`.

    With ``subtree`` it also matches every path below a matching one.
    """
    text = normalize(pattern.rstrip("/")) if pattern.strip("/") else ""
    if not text:
        raise InvalidOption(f"empty glob pattern {pattern!r}")
    regex = _translate(text)
    if "/" not in text and not pattern.startswith("/"):
        regex = f"(?:.*/)?{regex}"
    return f"{regex}(?:/.*)?" if subtree else regex


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str, subtree: bool) -> re.Pattern[str]:
    try:
        return re.compile(glob_to_regex(pattern, subtree=subtree), re.DOTALL)
    except re.error as exc:
        raise InvalidOption(f"bad glob pattern {pattern!r}: {exc}") from None


def glob_test(pattern: str, *, subtree: bool = False) -> Callable[[str], bool]:
    """:func:`match` (or :func:`matches_or_under` with ``subtree``) for ``pattern``, compiled
    now (InvalidOption for a bad pattern), as a test of paths already normalized."""
    fullmatch = _compiled(pattern, subtree).fullmatch
    return lambda path: bool(path) and fullmatch(path) is not None


def match(pattern: str, path: str) -> bool:
    """Does the glob ``pattern`` match the member ``path``? The root (``./``) never matches."""
    path = normalize(path)
    return bool(path) and _compiled(pattern, False).fullmatch(path) is not None


def matches_or_under(pattern: str, path: str) -> bool:
    """``match`` on ``path`` or on any of its parent directories."""
    path = normalize(path)
    return bool(path) and _compiled(pattern, True).fullmatch(path) is not None
