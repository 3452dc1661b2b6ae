"""Shared pieces of the fuzz harness: settings, the seed corpus, mutation strategies.

``OCCYSTRAP_FUZZ_EXAMPLES`` sets how many examples each property tries (default 200, which
keeps ``tests/fuzz`` under a minute); e.g. ``OCCYSTRAP_FUZZ_EXAMPLES=20000`` for a long run.
Seeds live in ``corpus/<kind>/`` (see ``make_seeds.py``) and ``corpus/regressions/<kind>/``
(inputs that once broke a parser). Every seed is also run as a plain test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from occystrap.errors import OccystrapError

CORPUS = Path(__file__).resolve().parent / "corpus"
EXAMPLES = int(os.environ.get("OCCYSTRAP_FUZZ_EXAMPLES", "200"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


def seed_files(kind: str) -> list[Path]:
    """Seed files of ``kind``, regressions included, in a stable order."""
    paths = [p for p in (CORPUS / kind).glob("*") if p.is_file()]
    paths += [p for p in (CORPUS / "regressions" / kind).glob("*") if p.is_file()]
    return sorted(paths)


def seed_bytes(kind: str) -> list[bytes]:
    return [p.read_bytes() for p in seed_files(kind)]


def seed_lines(kind: str) -> list[str]:
    return [line for data in seed_bytes(kind) for line in data.decode().splitlines() if line]


def only_occystrap_errors(fn: Callable[[], object]) -> None:
    """Run ``fn``; an OccystrapError is an acceptable answer, anything else fails the test."""
    try:
        fn()
    except OccystrapError:
        pass


# -- byte mutations --------------------------------------------------------------------------

_edit = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.integers(1, 1024)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
    st.tuples(st.just("digit"), st.integers(0, 1 << 16), st.sampled_from(b"01234567 \0\x80\xff")),
)


def mutate(data: bytes, edits: list[tuple[str, int, Any]]) -> bytes:
    """Apply ``edits`` (positions wrap around the current length)."""
    buf = bytearray(data)
    for op, pos, arg in edits:
        at = pos % (len(buf) + 1)
        if op == "set":
            buf[at : at + len(arg)] = arg
        elif op == "insert":
            buf[at:at] = arg
        elif op == "delete":
            del buf[at : at + arg]
        elif op == "truncate":
            del buf[at:]
        elif op == "digit" and at < len(buf):
            buf[at] = arg
    return bytes(buf)


def mutated(seeds: list[bytes], max_edits: int = 6) -> st.SearchStrategy[bytes]:
    """A seed with a few random edits (header fields, lengths, cuts, junk)."""
    return st.builds(mutate, st.sampled_from(seeds), st.lists(_edit, max_size=max_edits))


# -- JSON ------------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=()), max_size=20),  # lone surrogates included
    st.sampled_from(
        ["sha256:" + "a" * 64, "application/vnd.oci.image.layer.v1.tar+gzip", "", "\ud800"]
    ),
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.text(st.characters(exclude_categories=()), max_size=12), inner, max_size=5
        ),
    ),
    max_leaves=20,
)


def _set_path(doc: Any, path: list[int | str], value: Any) -> Any:
    """``doc`` with the node at ``path`` (indexes wrap, keys are taken from the node's keys)
    replaced by ``value``."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    step, rest = path[0], path[1:]
    if isinstance(doc, list):
        i = int(step) % len(doc) if isinstance(step, int) else 0
        return [_set_path(v, rest, value) if j == i else v for j, v in enumerate(doc)]
    keys = sorted(doc)
    key = keys[step % len(keys)] if isinstance(step, int) else step
    return {**doc, key: _set_path(doc.get(key), rest, value)}


def json_docs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Seed documents with one node replaced by any JSON value, as UTF-8 bytes."""
    parsed = [json.loads(s) for s in seeds if _is_json(s)]
    path = st.lists(st.one_of(st.integers(0, 20), st.text(max_size=10)), max_size=4)
    return st.builds(
        lambda doc, p, v: json.dumps(_set_path(doc, p, v)).encode(),
        st.sampled_from(parsed),
        path,
        json_values,
    )


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def any_document(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Structured edits, byte mutations, and arbitrary JSON or bytes."""
    return st.one_of(
        json_docs(seeds),
        mutated(seeds),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=64),
    )
