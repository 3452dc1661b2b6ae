"""occystrap.blobio: readers, compression, verification, spooling, atomic writes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import shutil
import subprocess
import tempfile
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import isal
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from occystrap.blobio import (
    CHUNK,
    COMPRESSION_LEVELS,
    DEFAULT_GZIP_LEVEL,
    DEFAULT_ZSTD_LEVEL,
    ChainReader,
    Compression,
    HashingReader,
    HashingWriter,
    IterReader,
    LimitedReader,
    VerifyingReader,
    atomic_write,
    compressing_reader,
    copy_stream,
    decompress_auto,
    decompressing_reader,
    detect,
    drain,
    iter_chunks,
    make_compressor,
    peek_compression,
    read_full,
    validate_level,
)
from occystrap.blobio.compression import GZIP_HEADER
from occystrap.blobio.readers import read_chunk
from occystrap.blobio.spool import spool
from occystrap.blobio.tee import observe_copy
from occystrap.errors import (
    DigestMismatch,
    InvalidOption,
    LimitExceeded,
    MalformedInput,
    OutputError,
    SizeMismatch,
)
from occystrap.model.digest import Digest

MIB = 1 << 20
IN_CI = os.environ.get("CI") == "true"


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI")
        pytest.skip(f"{name} not installed")
    return path


def sample(size: int = 3 * MIB, seed: int = 1) -> bytes:
    """Half text-like, half random: both halves matter to a compressor."""
    rnd = random.Random(seed)
    words = [rnd.randbytes(rnd.randint(2, 9)).hex().encode() for _ in range(500)]
    text = b" ".join(rnd.choice(words) for _ in range(size // 8))[: size // 2]
    return text + rnd.randbytes(size - len(text))


def compress(
    data: bytes, compression: Compression, level: int | None = None, step: int = CHUNK
) -> bytes:
    c = make_compressor(compression, level)
    parts = [c.compress(data[i : i + step]) for i in range(0, len(data), step)]
    return b"".join(parts) + c.flush()


def decompress(blob: bytes, compression: Compression | None = None, **kw: object) -> bytes:
    if compression is None:
        _, reader = decompress_auto(io.BytesIO(blob), **kw)  # type: ignore[arg-type]
    else:
        reader = decompressing_reader(io.BytesIO(blob), compression, **kw)  # type: ignore[arg-type]
    return b"".join(iter_chunks(reader))


def random_splits(data: bytes, seed: int, largest: int = 3 * MIB) -> list[bytes]:
    rnd = random.Random(seed)
    out, pos = [], 0
    while pos < len(data):
        step = rnd.randint(1, largest)
        out.append(data[pos : pos + step])
        pos += step
    return out


class ShortReads:
    """A raw-style reader that returns at most ``most`` bytes per call."""

    def __init__(self, data: bytes, most: int = 7) -> None:
        self._f = io.BytesIO(data)
        self._most = most

    def read(self, n: int = -1, /) -> bytes:
        return self._f.read(self._most if n < 0 else min(n, self._most))


# --- readers -------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=30),
    sizes=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=40),
)
def test_iter_reader_returns_exact_sizes(chunks: list[bytes], sizes: list[int]) -> None:
    data = b"".join(chunks)
    reader = IterReader(chunks)
    got, pos = [], 0
    for n in sizes:
        piece = reader.read(n)
        assert piece == data[pos : pos + n]  # exactly n bytes unless the stream ends
        got.append(piece)
        pos += len(piece)
    assert reader.read() == data[pos:]
    assert reader.read(10) == b""


def test_iter_reader_hands_over_whole_chunks_and_closes_generator() -> None:
    closed = []

    def gen() -> Iterator[bytes]:
        try:
            yield b"a" * CHUNK
            yield b"b" * CHUNK
        finally:
            closed.append(True)

    reader = IterReader(gen())
    first = reader.read(CHUNK)
    assert first == b"a" * CHUNK
    reader.close()
    assert closed == [True]


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=30),
    sizes=st.lists(st.integers(min_value=-1, max_value=50), min_size=1, max_size=40),
)
def test_iter_reader_read_chunk_mixes_with_read(chunks: list[bytes], sizes: list[int]) -> None:
    """``read_chunk`` (size -1 here) hands over what is left of a chunk or the next chunk,
    the very object that came in, never an empty piece before the end."""
    data = b"".join(chunks)
    reader = IterReader(chunks)
    pos = 0
    for n in sizes:
        piece = reader.read_chunk() if n < 0 else reader.read(n)
        assert piece == data[pos : pos + len(piece)]
        if n < 0:
            assert piece or pos == len(data)
        pos += len(piece)
    while piece := reader.read_chunk():
        pos += len(piece)
    assert pos == len(data)
    whole = [b"a" * 10, b"b" * 7]
    reader = IterReader(whole)
    assert reader.read_chunk() is whole[0] and reader.read_chunk() is whole[1]


def test_read_chunk_is_checked_like_read() -> None:
    data = b"x" * (3 * CHUNK // 2)
    pieces = [data[:CHUNK], data[CHUNK:]]
    r = VerifyingReader(IterReader(pieces), Desc(Digest.of_bytes(data), len(data)), "layer a")
    assert r.read_chunk() is pieces[0] and r.read_chunk() is pieces[1]
    assert r.read_chunk() == b"" and r.verified and r.size == len(data)
    wrong = Desc(Digest.of_bytes(b"other"), len(data))
    r = VerifyingReader(IterReader(pieces), wrong, "layer b")
    r.read_chunk()
    with pytest.raises(DigestMismatch, match="layer b"):
        r.read_chunk()
    short = Desc(Digest.of_bytes(data + b"!"), len(data) + 1)
    r = VerifyingReader(IterReader(pieces), short, "layer c")
    with pytest.raises(SizeMismatch, match="layer c"):
        while r.read_chunk():
            pass
    h = HashingReader(io.BytesIO(data))  # a source without read_chunk: read(CHUNK)
    assert len(h.read_chunk()) == CHUNK
    assert h.read_chunk() == data[CHUNK:] and h.read_chunk() == b""
    assert h.eof and h.digest() == Digest.of_bytes(data)


def test_read_chunk_does_not_bypass_a_tee() -> None:
    """A tee's wrapper forwards unknown attributes to what it wraps; ``read_chunk`` must
    still go through the wrapper, or the observer misses the bytes."""
    data = bytes(range(256)) * (3 * CHUNK // 256)
    seen: list[bytes] = []

    def observer(stream: BinaryIO) -> None:
        while piece := stream.read(1000):
            seen.append(piece)

    got = []
    with observe_copy(observer) as tap:
        wrapped = tap.wrap(IterReader([data[:CHUNK], data[CHUNK:]]))  # type: ignore[arg-type]
        while piece := read_chunk(wrapped):
            got.append(piece)
    assert b"".join(got) == data
    assert b"".join(seen) == data


def test_chain_reader_replays_prefix_then_source() -> None:
    r = ChainReader(b"abc", io.BytesIO(b"defgh"))
    assert r.read(2) == b"ab"
    assert r.read(3) == b"cde"
    assert r.read() == b"fgh"
    assert r.read(1) == b""
    assert ChainReader(b"xy", io.BytesIO(b"z")).read() == b"xyz"


def test_chain_and_limited_readers_fill_reads_from_short_read_sources() -> None:
    assert ChainReader(b"ab", ShortReads(b"cdefghij", 3)).read(9) == b"abcdefghi"
    assert read_full(ShortReads(b"0123456789", 2), 7) == b"0123456"


def test_limited_reader_never_reads_past_its_limit() -> None:
    src = io.BytesIO(b"0123456789")
    r = LimitedReader(src, 4)
    assert r.read(3) == b"012"
    assert r.read(10) == b"3"
    assert r.read() == b""
    assert src.tell() == 4
    assert src.read() == b"456789"


def test_copy_stream_and_drain_count_bytes(tmp_path: Path) -> None:
    data = sample(2 * MIB + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    out = io.BytesIO()
    with open(path, "rb") as f:  # has readinto: the reused-buffer path
        assert copy_stream(f, out) == len(data)
    assert out.getvalue() == data
    out2 = io.BytesIO()
    assert copy_stream(IterReader(random_splits(data, 3, 100_000)), out2, chunk=65536) == len(data)
    assert out2.getvalue() == data
    with open(path, "rb") as f:
        assert drain(f) == len(data)
    assert drain(IterReader([b"ab", b"c"])) == 3


# --- compression: detection and levels ------------------------------------------


def test_detect_by_magic() -> None:
    assert detect(b"\x1f\x8b\x08\x00") is Compression.GZIP
    assert detect(b"\x28\xb5\x2f\xfd") is Compression.ZSTD
    assert detect(b"\x5a\x2a\x4d\x18") is Compression.ZSTD  # skippable frame
    assert detect(b"ustar") is Compression.NONE
    assert detect(b"") is Compression.NONE
    assert detect(compress(b"x", Compression.ZSTD)[:4]) is Compression.ZSTD


@pytest.mark.parametrize("data", [b"", b"\x1f", b"ab", b"abcd", b"abcdefgh" * 1000])
def test_peek_compression_loses_no_bytes(data: bytes) -> None:
    for blob in (data, compress(data, Compression.GZIP), compress(data, Compression.ZSTD)):
        kind, reader = peek_compression(io.BytesIO(blob))
        assert kind is detect(blob)
        assert reader.read() == blob


def test_levels_validate() -> None:
    assert validate_level(Compression.GZIP, None) == DEFAULT_GZIP_LEVEL
    assert validate_level(Compression.ZSTD, None) == DEFAULT_ZSTD_LEVEL == 3
    assert validate_level(Compression.NONE, None) == 0
    for lvl in COMPRESSION_LEVELS[Compression.GZIP]:
        assert validate_level(Compression.GZIP, lvl) == lvl
    assert list(COMPRESSION_LEVELS[Compression.GZIP]) == [0, 1, 2, 3]
    for bad in (-1, 4, 9, True):
        with pytest.raises(InvalidOption, match="gzip compression level must be 0..3"):
            validate_level(Compression.GZIP, bad)
    with pytest.raises(InvalidOption):
        validate_level(Compression.ZSTD, 23)
    with pytest.raises(InvalidOption, match="takes no level"):
        validate_level(Compression.NONE, 1)
    with pytest.raises(InvalidOption):
        make_compressor(Compression.GZIP, 6)
    with pytest.raises(InvalidOption, match="unknown compression 'xz'"):
        decompressing_reader(io.BytesIO(b""), "xz")
    assert decompress(compress(b"abc", Compression.GZIP), "gzip") == b"abc"  # type: ignore[arg-type]


# --- compression: round trips and compatibility ------------------------------------


@pytest.mark.parametrize(
    ("compression", "level"),
    [(Compression.NONE, None)]
    + [(Compression.GZIP, lvl) for lvl in range(4)]
    + [(Compression.ZSTD, lvl) for lvl in (1, 3, 19)],
)
def test_round_trip_push_and_pull(compression: Compression, level: int | None) -> None:
    data = sample(3 * MIB + 5)
    blob = compress(data, compression, level)
    pulled = compressing_reader(io.BytesIO(data), compression, level)
    assert b"".join(iter_chunks(pulled, 100_000)) == blob
    assert decompress(blob, compression) == data
    assert decompress(blob) == data  # auto-detected
    assert decompress(compress(b"", compression, level), compression) == b""


def test_gzip_output_is_standard_gzip() -> None:
    data = sample()
    blob = compress(data, Compression.GZIP)
    assert gzip.decompress(blob) == data
    assert zlib.decompress(blob, 31) == data
    gunzip = need_tool("gzip")
    assert subprocess.run([gunzip, "-t"], input=blob, check=False).returncode == 0
    out = subprocess.run([gunzip, "-dc"], input=blob, capture_output=True, check=True).stdout
    assert out == data


def test_zstd_output_is_standard_zstd_and_reads_cli_output() -> None:
    data = sample()
    blob = compress(data, Compression.ZSTD)
    cli = need_tool("zstd")
    assert subprocess.run([cli, "-dc"], input=blob, capture_output=True, check=True).stdout == data
    by_cli = subprocess.run([cli, "-c", "-3"], input=data, capture_output=True, check=True).stdout
    assert decompress(by_cli) == data


def test_reads_gzip_written_by_gzip_cli_with_name_and_mtime(tmp_path: Path) -> None:
    gz = need_tool("gzip")
    data = sample(MIB)
    path = tmp_path / "layer.tar"
    path.write_bytes(data)
    subprocess.run([gz, "-k", "-N", str(path)], check=True)  # writes FNAME and MTIME
    assert decompress((tmp_path / "layer.tar.gz").read_bytes()) == data


def test_multi_member_gzip_and_zero_padding() -> None:
    a, b = sample(MIB, 1), sample(MIB, 2)
    blob = compress(a, Compression.GZIP) + gzip.compress(b, mtime=0) + b"\0" * 4096
    assert decompress(blob) == a + b
    padded_between = compress(a, Compression.GZIP) + b"\0" * 3 + compress(b, Compression.GZIP)
    assert decompress(padded_between) == a + b
    with pytest.raises(MalformedInput, match="trailing garbage after gzip stream"):
        decompress(compress(a, Compression.GZIP) + b"\0\0junk")


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD])
def test_many_small_members_or_frames_through_short_reads(compression: Compression) -> None:
    pieces = [sample(n, n) for n in range(1, 3000, 97)]
    blob = b"".join(compress(p, compression) for p in pieces)
    want = b"".join(pieces)
    assert decompress(blob) == want
    reader = decompressing_reader(ShortReads(blob, 5), compression)
    assert b"".join(iter_chunks(reader, 1000)) == want


def test_multi_frame_and_skippable_zstd() -> None:
    a, b = sample(MIB, 1), sample(MIB, 2)
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"hello"
    blob = skippable + compress(a, Compression.ZSTD) + skippable + compress(b, Compression.ZSTD)
    assert decompress(blob) == a + b
    with_size = zstandard.ZstdCompressor(write_content_size=True, write_checksum=False).compress(a)
    assert decompress(with_size + blob) == a + a + b


# --- compression: determinism --------------------------------------------------


def test_gzip_is_deterministic_whatever_the_input_split() -> None:
    data = sample(5 * MIB)
    once = compress(data, Compression.GZIP)
    assert compress(data, Compression.GZIP) == once
    for seed in (1, 2, 3):
        c = make_compressor(Compression.GZIP)
        split = b"".join(c.compress(p) for p in random_splits(data, seed)) + c.flush()
        assert split == once
    assert once[:10] == GZIP_HEADER == bytes.fromhex("1f8b08000000000000ff")
    assert once[3] == 0  # FLG: no FNAME, no FEXTRA, no comment
    assert once[4:8] == b"\0\0\0\0"  # MTIME 0
    assert once[-8:] == (zlib.crc32(data).to_bytes(4, "little") + len(data).to_bytes(4, "little"))


def test_zstd_is_deterministic_and_streaming_frame_has_no_content_size() -> None:
    data = sample(5 * MIB)
    once = compress(data, Compression.ZSTD)
    for seed in (1, 2):
        c = make_compressor(Compression.ZSTD)
        assert b"".join(c.compress(p) for p in random_splits(data, seed)) + c.flush() == once
    params = zstandard.get_frame_parameters(once)
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert params.has_checksum
    # Multi-threaded output differs from single-threaded but not with the thread count.
    mt = [
        b"".join(iter_chunks(compressing_reader(io.BytesIO(data), Compression.ZSTD, threads=t)))
        for t in (1, 2)
    ]
    assert mt[0] == mt[1]
    assert decompress(mt[0]) == data


def golden_input() -> bytes:
    text = b"".join(f"line {i} {i * i % 977} occystrap\n".encode() for i in range(200_000))
    return text + random.Random(7).randbytes(1 << 20) + text[:300_000]


# sha256 of make_compressor(...) output for golden_input(), per pinned library version.
# If a library upgrade moves these, every recompressed layer digest moves too: record the
# new values here and say so in the release notes.
GOLDEN = {
    ("isal", "1.9.1", 1): "652d1bb3955ccf08938ec8422d9f81ea0b9d82263ae9948709cf4b70cbd89bc7",
    ("isal", "1.9.1", 2): "92665e2e0829b9ef6f4991e1abe2bcc693395f781344a603c83f07d137d7ff21",
    ("zstd", "1.5.7", 3): "36d9e6c91d5ddacdf5b0857a299e4bc5f71609fed863c3b7fbdc0a1747c28422",
}


def test_compressed_bytes_match_recorded_digests() -> None:
    data = golden_input()
    versions = {"isal": isal.__version__, "zstd": ".".join(map(str, zstandard.ZSTD_VERSION))}
    checked = 0
    for (lib, version, level), expected in GOLDEN.items():
        if versions[lib] != version:
            continue
        compression = Compression.GZIP if lib == "isal" else Compression.ZSTD
        assert hashlib.sha256(compress(data, compression, level)).hexdigest() == expected
        checked += 1
    assert checked, f"no recorded digests for {versions}; add them to GOLDEN"


# --- compression: bad input -----------------------------------------------------


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD])
def test_every_truncation_is_malformed_input(compression: Compression) -> None:
    blob = compress(sample(20_000), compression)
    for cut in range(len(blob)):
        with pytest.raises(MalformedInput, match=f"^truncated {compression} stream"):
            decompress(blob[:cut], compression)


def test_corrupt_streams_are_malformed_input() -> None:
    data = sample(MIB)
    gz = bytearray(compress(data, Compression.GZIP))
    gz[len(gz) // 2] ^= 0xFF
    with pytest.raises(MalformedInput, match="^corrupt gzip stream in layer x: "):
        decompress(bytes(gz), Compression.GZIP, what="layer x")
    gz = bytearray(compress(data, Compression.GZIP))
    gz[2] = 9  # unknown compression method
    with pytest.raises(MalformedInput, match="^corrupt gzip stream: "):
        decompress(bytes(gz), Compression.GZIP)
    zs = bytearray(compress(data, Compression.ZSTD))
    zs[len(zs) // 2] ^= 0xFF
    with pytest.raises(MalformedInput, match="^corrupt zstd stream: "):
        decompress(bytes(zs), Compression.ZSTD)
    with pytest.raises(MalformedInput, match="^corrupt zstd stream: "):
        decompress(compress(data, Compression.ZSTD) + b"garbage!", Compression.ZSTD)
    with pytest.raises(MalformedInput):
        decompress(b"not gzip at all", Compression.GZIP)
    with pytest.raises(MalformedInput):
        decompress(b"not zstd at all", Compression.ZSTD)


def zero_stream(compression: Compression, total: int) -> Iterator[bytes]:
    """A compressed stream of ``total`` zero bytes, produced lazily."""
    c = make_compressor(compression)
    zeros = bytes(CHUNK)
    for _ in range(total // CHUNK):
        yield c.compress(zeros)
    yield c.flush()


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD, Compression.NONE])
def test_decompression_bomb_hits_limit(compression: Compression) -> None:
    limit = 10 * MIB
    reader = decompressing_reader(
        IterReader(zero_stream(compression, 200 * MIB)), compression, limit=limit, what="layer y"
    )
    delivered = 0
    with pytest.raises(LimitExceeded, match="in layer y exceeds the limit of 10485760 bytes"):
        while chunk := reader.read(3 * MIB):
            delivered += len(chunk)
    assert delivered <= limit
    exact = decompressing_reader(
        IterReader(zero_stream(compression, limit)), compression, limit=limit
    )
    assert drain(exact) == limit


@pytest.mark.slow
@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD])
def test_decompressing_300_mib_keeps_memory_small(compression: Compression, tmp_path: Path) -> None:
    block = sample(CHUNK, 5)
    path = tmp_path / "blob"
    with open(path, "wb") as f:
        c = make_compressor(compression)
        for i in range(300):
            f.write(c.compress(block[i:] + block[:i]))
        f.write(c.flush())
    tracemalloc.start()
    try:
        with open(path, "rb") as f:
            total = drain(decompressing_reader(f, compression))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 300 * CHUNK
    print(f"tracemalloc peak {peak / MIB:.2f} MiB")
    assert peak < 6 * MIB, f"peak {peak / MIB:.1f} MiB"


# --- verify ----------------------------------------------------------------------


@dataclass(frozen=True)
class Desc:
    digest: Digest
    size: int | None


def test_verifying_reader_accepts_matching_stream() -> None:
    data = sample(2 * MIB)
    r = VerifyingReader(io.BytesIO(data), Desc(Digest.of_bytes(data), len(data)), "blob a")
    assert b"".join(iter_chunks(r, 300_000)) == data
    assert r.verified and r.size == len(data)
    r2 = VerifyingReader(io.BytesIO(data), Desc(Digest.of_bytes(data), None), "blob a")
    assert r2.finish() == Digest.of_bytes(data)
    assert r2.verified


def test_verifying_reader_fails_as_soon_as_too_many_bytes_arrive() -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"x" * CHUNK

    size = 3 * MIB + MIB // 2
    expected = Desc(Digest.of_bytes(b"x" * size), size)
    r = VerifyingReader(IterReader(endless()), expected, "layer z")
    with pytest.raises(SizeMismatch, match=f"for layer z: expected {size} bytes, got {4 * MIB}"):
        drain(r)
    # The right bytes followed by more: the digest matches at `size`, the extra byte fails.
    r = VerifyingReader(io.BytesIO(b"x" * size + b"!"), expected, "layer z")
    assert r.read(size) == b"x" * size
    with pytest.raises(SizeMismatch, match="got 3670017"):
        r.read(10)


def test_verifying_reader_short_stream_and_wrong_digest() -> None:
    data = b"hello world"
    with pytest.raises(SizeMismatch, match="expected 12 bytes, got 11"):
        drain(VerifyingReader(io.BytesIO(data), Desc(Digest.of_bytes(data), 12), "cfg"))
    wrong = Digest.of_bytes(b"other")
    r = VerifyingReader(io.BytesIO(data), Desc(wrong, len(data)), "config sha256:1")
    with pytest.raises(
        DigestMismatch, match=f"digest mismatch for config sha256:1: expected {wrong}"
    ):
        r.read(len(data))  # checked once exactly `size` bytes arrived, before EOF
    with pytest.raises(DigestMismatch):
        drain(VerifyingReader(io.BytesIO(data), Desc(wrong, None), "cfg"))
    r = VerifyingReader(ShortReads(data, 3), Desc(Digest.of_bytes(data), len(data)), "cfg")
    assert b"".join(iter_chunks(r, 5)) == data and r.verified  # short reads are not EOF


def test_hashing_reader_and_writer() -> None:
    data = sample(MIB + 3)
    hr = HashingReader(io.BytesIO(data), "sha512")
    drain(hr)
    assert hr.eof and hr.size == len(data) and hr.digest() == Digest.of_bytes(data, "sha512")
    out = io.BytesIO()
    hw = HashingWriter(out)
    copy_stream(io.BytesIO(data), hw)
    assert hw.size == len(data) and hw.digest() == Digest.of_bytes(data)
    assert out.getvalue() == data


# --- spool and atomic_write ---------------------------------------------------------


def test_spool_computes_digest_and_cleans_up(tmp_path: Path) -> None:
    """The spool file is unnamed: nothing to list, nothing to leave behind when killed."""
    data = sample(3 * MIB + 1)
    blob = spool(IterReader(random_splits(data, 4, MIB)), str(tmp_path))
    assert blob.digest == Digest.of_bytes(data) and blob.size == len(data)
    assert list(tmp_path.iterdir()) == []
    assert os.readlink(blob.path).startswith(f"{tmp_path}/")  # /proc/self/fd/N
    with blob.open() as a, blob.open() as b:
        assert a.read() == data
        assert b.read(5) == data[:5]
    early = blob.open()
    blob.close()
    with early:
        assert early.read(7) == data[:7]  # a reader opened before close() keeps working
    with pytest.raises(ValueError, match="closed"):
        blob.open()
    with spool(io.BytesIO(b"abc"), str(tmp_path)) as blob2:
        with blob2.open() as f:
            assert f.read() == b"abc"
    assert list(tmp_path.iterdir()) == []


def test_spool_is_named_where_it_cannot_be_opened_unnamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from occystrap.blobio import spool as spool_module

    monkeypatch.setattr(spool_module, "_FD_DIR", str(tmp_path / "no-proc"))
    (tmp_path / "t").mkdir()
    with spool(io.BytesIO(b"abc"), str(tmp_path / "t")) as blob:
        assert [p.name.startswith("occystrap-spool-") for p in (tmp_path / "t").iterdir()] == [True]
        with blob.open() as f:
            assert f.read() == b"abc"
    assert list((tmp_path / "t").iterdir()) == []


def test_spool_leaves_nothing_when_the_source_fails(tmp_path: Path) -> None:
    def failing() -> Iterator[bytes]:
        yield b"a" * CHUNK
        raise MalformedInput("source broke")

    with pytest.raises(MalformedInput, match="source broke"):
        spool(IterReader(failing()), str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="cannot create a temporary file"):
        spool(io.BytesIO(b"x"), str(tmp_path / "missing"))


def test_spool_defaults_to_system_temp_dir() -> None:
    with spool(io.BytesIO(b"abc")) as blob:
        assert os.path.dirname(os.readlink(blob.path)) == tempfile.gettempdir()


def test_atomic_write_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    with atomic_write(target, fsync=True) as f:
        f.write(b"new")
        assert not target.exists()
        assert [p.name.startswith(".index.json.tmp-") for p in tmp_path.iterdir()] == [True]
    assert target.read_bytes() == b"new"
    assert list(tmp_path.iterdir()) == [target]
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask

    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"new"  # the old file is untouched
    assert list(tmp_path.iterdir()) == [target]

    with pytest.raises(OutputError, match="cannot create"), atomic_write(tmp_path / "no" / "x"):
        pass
