"""Fuzz the tar reader (and the writer on what the reader accepts).

Properties, on seed tars of every format with random edits:

* reading every entry (and up to 64 KiB of each body) raises only OccystrapError;
* when reading succeeds, re-encoding every header (``rewrite_header``) and writing the
  archive raises only OccystrapError, and when that succeeds too the result reads back
  with the same member names: what the reader accepts, the writer can write, and the
  reader can read again.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given

from occystrap.errors import OccystrapError
from occystrap.tario import iter_entries, iter_tar_bytes, rewrite_header

from .seeds import FUZZ, mutated, only_occystrap_errors, seed_bytes, seed_files

TARS = seed_bytes("tar")
BODY_LIMIT = 64 << 10


def read_names(data: bytes) -> list[str]:
    names = []
    for entry in iter_entries(io.BytesIO(data), what="fuzz"):
        names.append(entry.info.name)
        entry.body.read(BODY_LIMIT)
    return names


def roundtrip(data: bytes) -> None:
    try:
        names = read_names(data)
    except OccystrapError:
        return
    entries = (
        rewrite_header(e, mtime=0) if e.info.type != b"g" else e
        for e in iter_entries(io.BytesIO(data), what="fuzz")
    )
    try:
        out = b"".join(iter_tar_bytes(entries))
    except OccystrapError:
        return
    again = read_names(out)
    assert [n.rstrip("/") for n in again] == [n.rstrip("/") for n in names]


@pytest.mark.parametrize("path", seed_files("tar"), ids=lambda p: p.name)
def test_seed_tars_read_and_roundtrip(path: object) -> None:
    data = path.read_bytes()  # type: ignore[attr-defined]
    only_occystrap_errors(lambda: read_names(data))
    roundtrip(data)


@FUZZ
@given(mutated(TARS, max_edits=4))
def test_reader_raises_only_occystrap_errors(data: bytes) -> None:
    only_occystrap_errors(lambda: read_names(data))


@FUZZ
@given(mutated(TARS, max_edits=3))
def test_what_the_reader_accepts_the_writer_writes(data: bytes) -> None:
    roundtrip(data)
