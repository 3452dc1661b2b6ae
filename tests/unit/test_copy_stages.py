"""copy_stages: threads between a layer's steps, the one-pass compress-and-spool, and the
engine routes built on them (errors cross threads, nothing is left behind, bytes are right)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from lab.ocilayout import build_oci_layout
from lab.tarspec import directory, file
from occystrap import api
from occystrap.blobio.compress import compressing_reader
from occystrap.copy_stages import KnownBlob, Prefetch, Stage, chunks_of, compressed, pack
from occystrap.errors import IntegrityError, MalformedInput, OutputError
from occystrap.image import Layer
from occystrap.model.digest import Digest
from occystrap.transports.base import RunContext

MIB = 1 << 20


def _numbers(count: int, size: int = MIB) -> Iterator[bytes]:
    for i in range(count):
        yield bytes([i % 251]) * size


def test_stage_hands_on_every_chunk_in_order() -> None:
    with Stage(_numbers(20, 1000), "t") as stage:
        got = list(stage)
    assert got == list(_numbers(20, 1000))


def test_stage_raises_the_threads_error_after_its_chunks() -> None:
    def failing() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise MalformedInput("bad tar")

    stage = Stage(failing(), "t")
    assert next(stage) == b"a"
    assert next(stage) == b"b"
    with pytest.raises(MalformedInput, match="bad tar"):
        next(stage)
    with pytest.raises(StopIteration):
        next(stage)


def test_stage_starts_on_first_next_and_close_stops_the_thread() -> None:
    made: list[int] = []
    closed = threading.Event()

    def endless() -> Iterator[bytes]:
        try:
            while True:
                made.append(1)
                yield b"x" * 1000
        finally:
            closed.set()

    stage = Stage(endless(), "t", depth=2)
    time.sleep(0.05)
    assert made == []  # nothing read before someone asks
    assert next(stage) == b"x" * 1000
    time.sleep(0.05)
    assert len(made) <= 5  # bounded by the queue
    stage.close()
    assert closed.is_set()  # the producer's generator was closed, in its thread
    assert not stage._thread.is_alive()
    with pytest.raises(StopIteration):
        next(stage)


def test_stage_never_started_closes_its_input() -> None:
    closed = []

    def gen() -> Iterator[bytes]:
        try:
            yield b"x"
        finally:
            closed.append(True)

    g = gen()
    next(g)  # started, so closing it runs its finally
    Stage(g, "t").close()
    assert closed == [True]


def test_nested_stages_close_from_the_outside() -> None:
    inner = Stage(_numbers(1000, 1000), "inner", depth=2)
    outer = Stage(inner, "outer", depth=2)  # a stage's input closes with it
    assert next(outer) == bytes(1000)
    outer.close()
    assert not inner._thread.is_alive() and not outer._thread.is_alive()
    with ExitStack() as stack:  # as the engine chains them: each one on the stack
        first = stack.enter_context(Stage(_numbers(1000, 1000), "first", depth=2))
        second = stack.enter_context(Stage((c[:10] for c in first), "second", depth=2))
        assert next(second) == bytes(10)
    assert not first._thread.is_alive() and not second._thread.is_alive()


def test_pack_is_one_pass_and_matches_the_plain_compressor(tmp_path: Path) -> None:
    data = b"".join(_numbers(3, 700_000)) + os.urandom(300_000)
    for compression in ("gzip", "zstd", "none"):
        with pack(
            Stage(chunks_of(io.BytesIO(data)), "t"), compression, None, str(tmp_path)
        ) as packed:
            blob = packed.blob
            assert os.path.dirname(os.readlink(blob.path)) == str(tmp_path)
            assert os.listdir(tmp_path) == []  # unnamed
            with blob.open() as f:
                stored = f.read()
            expect = compressing_reader(io.BytesIO(data), compression).read()
            assert stored == expect
            assert blob.digest == Digest.of_bytes(stored) and blob.size == len(stored)
            assert packed.diff_id == Digest.of_bytes(data) and packed.plain_size == len(data)
            if compression == "gzip":
                assert gzip.decompress(stored) == data
        assert os.listdir(tmp_path) == []  # closed: the spool is gone


def test_pack_removes_its_spool_when_the_input_fails(tmp_path: Path) -> None:
    def failing() -> Iterator[bytes]:
        yield b"x" * MIB
        raise MalformedInput("cut")

    with pytest.raises(MalformedInput):
        pack(failing(), "gzip", None, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_pack_in_a_missing_directory_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="temporary file"):
        pack(iter([b"x"]), "gzip", None, str(tmp_path / "missing"))


def test_compressed_chunks_equal_the_compressing_reader() -> None:
    data = b"".join(_numbers(5, 300_000))
    got = b"".join(compressed(chunks_of(io.BytesIO(data)), "gzip", 2))
    assert got == compressing_reader(io.BytesIO(data), "gzip", 2).read()


def test_known_blob_counts_without_hashing() -> None:
    digest = Digest.of_bytes(b"never hashed")
    blob = KnownBlob(io.BytesIO(b"abc" * 1000), digest)
    while blob.read(100):
        pass
    assert blob.size == 3000 and blob.digest() == digest


def test_chunks_of_feeds_a_hasher() -> None:
    h = hashlib.sha256()
    data = os.urandom(3 * MIB + 5)
    assert b"".join(chunks_of(io.BytesIO(data), h)) == data
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


# -- the engine's routes ------------------------------------------------------------------


def _image(path: Path) -> None:
    big = os.urandom(3 * MIB)
    build_oci_layout(
        path,
        [
            [directory("a"), file("a/big", big), file("a/small", "s\n")],
            [directory("b"), *(file(f"b/f{i}", f"{i}\n" * 100) for i in range(300))],
        ],
    )


def _blob_files(root: Path) -> set[str]:
    return set(os.listdir(root / "blobs" / "sha256"))


def test_rewrite_to_a_layout_spools_only_in_temp_dir(tmp_path: Path) -> None:
    _image(tmp_path / "src")
    temp = tmp_path / "temp"
    temp.mkdir()
    ctx = RunContext(temp_dir=str(temp))
    out = tmp_path / "out"
    result = api.process(
        f"ocidir://{tmp_path / 'src'}:latest", f"ocidir://{out}:v1", ["normalize-timestamps"], ctx
    )
    assert os.listdir(temp) == []
    written = [w.descriptor.digest.encoded for w in result.layers]  # type: ignore[union-attr]
    assert set(written) <= _blob_files(out)
    for w in result.layers:  # type: ignore[union-attr]
        data = (out / "blobs" / "sha256" / w.descriptor.digest.encoded).read_bytes()
        assert Digest.of_bytes(data) == w.descriptor.digest
        assert Digest.of_bytes(gzip.decompress(data)) == w.diff_id
    # the same again: every rewritten blob is already there, nothing new appears
    before = _blob_files(out)
    again = api.process(
        f"ocidir://{tmp_path / 'src'}:latest", f"ocidir://{out}:v2", ["normalize-timestamps"], ctx
    )
    assert _blob_files(out) - before <= {again.manifest.digest.encoded}  # type: ignore[union-attr]


def test_a_corrupt_layer_fails_across_the_threads_and_leaves_nothing(tmp_path: Path) -> None:
    _image(tmp_path / "src")
    blobs = tmp_path / "src" / "blobs" / "sha256"
    biggest = max(blobs.iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    temp = tmp_path / "temp"
    temp.mkdir()
    ctx = RunContext(temp_dir=str(temp))
    for dest, chain in (
        (f"ocidir://{tmp_path / 'o1'}:v1", ["normalize-timestamps"]),
        (f"tar://{tmp_path / 'o2.tar'}", ["normalize-timestamps"]),
        (f"tar://{tmp_path / 'o3.tar'}", []),
        (f"ocidir://{tmp_path / 'o4'}:v1", []),
    ):
        with pytest.raises((IntegrityError, MalformedInput)):
            api.process(f"ocidir://{tmp_path / 'src'}:latest", dest, chain, ctx)
        assert os.listdir(temp) == []
    assert not (tmp_path / "o2.tar").exists() and not (tmp_path / "o3.tar").exists()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("layer-")]
    assert leftover == []


def test_tar_to_layout_compresses_and_keeps_diff_ids(tmp_path: Path) -> None:
    _image(tmp_path / "src")
    api.process(f"ocidir://{tmp_path / 'src'}:latest", f"tar://{tmp_path / 'img.tar'}")
    result = api.process(f"tar://{tmp_path / 'img.tar'}", f"ocidir://{tmp_path / 'out'}:v1")
    for w in result.layers:  # type: ignore[union-attr]
        data = (tmp_path / "out" / "blobs" / "sha256" / w.descriptor.digest.encoded).read_bytes()
        assert Digest.of_bytes(data) == w.descriptor.digest
        assert Digest.of_bytes(gzip.decompress(data)) == w.diff_id
        assert w.outcome == "converted"


# -- Prefetch: layers read ahead of their turn ------------------------------------------------


class _Endless(io.RawIOBase):
    """A stream that never ends; counts reads and notes being closed."""

    def __init__(self) -> None:
        self.reads = 0
        self.was_closed = threading.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        self.reads += 1
        time.sleep(0.001)
        b[:1] = b"x"
        return 1

    def close(self) -> None:
        self.was_closed.set()
        super().close()


def _layer(index: int, opener: Any) -> Layer:
    return Layer(index, "application/vnd.oci.image.layer.v1.tar", None, None, opener)


def test_prefetch_reads_each_layer_to_its_end_before_its_turn() -> None:
    read: dict[int, int] = {}

    def opener(i: int) -> Any:
        @contextmanager
        def open_() -> Iterator[io.BytesIO]:
            stream = io.BytesIO(bytes(3 * MIB + i))
            yield stream
            read[i] = stream.tell()

        return open_

    layers = [_layer(i, opener(i)) for i in range(1, 5)]
    with Prefetch(layers, 2) as ahead:
        for layer in layers:
            ahead.wait_for(layer)
            assert read[layer.index] == 3 * MIB + layer.index  # read to the end before its turn
    assert sorted(read) == [1, 2, 3, 4]


def test_prefetch_failure_is_left_to_the_turn_and_close_stops_the_rest() -> None:
    endless = _Endless()

    @contextmanager
    def failing() -> Iterator[io.BytesIO]:
        raise IntegrityError("blob sha256:x: digest mismatch")
        yield io.BytesIO()  # pragma: no cover

    @contextmanager
    def forever() -> Iterator[Any]:
        with endless:
            yield endless

    bad, slow = _layer(1, failing), _layer(2, forever)
    ahead = Prefetch([bad, slow], 2)
    ahead.wait_for(bad)  # the error is not raised here: the turn reports it
    deadline = time.monotonic() + 5
    while endless.reads < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert endless.reads >= 3
    ahead.close()
    assert endless.was_closed.is_set()
    reads = endless.reads
    time.sleep(0.05)
    assert endless.reads == reads  # stopped, not still reading


def test_prefetch_without_workers_reads_nothing() -> None:
    opened: list[int] = []

    @contextmanager
    def opener() -> Iterator[io.BytesIO]:
        opened.append(1)
        yield io.BytesIO(b"data")

    layer = _layer(1, opener)
    with Prefetch([layer], 0) as ahead:
        ahead.wait_for(layer)
    assert opened == []


def test_prefetch_close_does_not_wait_for_a_stalled_read() -> None:
    """A read-ahead blocked on a server that stopped sending must not hold up an error or
    a Ctrl-C: close() waits briefly, and the thread is a daemon."""
    release = threading.Event()
    started = threading.Event()

    class Stalled(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            started.set()
            release.wait(30)
            return 0

    @contextmanager
    def stalled() -> Iterator[Any]:
        yield Stalled()

    ahead = Prefetch([_layer(1, stalled)], 1)
    assert started.wait(5)
    t = time.monotonic()
    ahead.close()
    assert time.monotonic() - t < Prefetch.CLOSE_WAIT + 1
    assert all(th.daemon for th in threading.enumerate() if th.name.startswith("prefetch"))
    release.set()


def test_prefetch_wait_for_a_read_still_running_then_the_rest() -> None:
    """The turn comes while its layer is still being read ahead: it waits for that read,
    and the read-aheads of the layers after it still happen (one worker for all)."""
    release = threading.Event()
    read: list[int] = []

    def opener(i: int) -> Any:
        @contextmanager
        def open_() -> Iterator[io.BytesIO]:
            if i == 1:
                release.wait(10)
            yield io.BytesIO(b"x" * 100)
            read.append(i)

        return open_

    layers = [_layer(i, opener(i)) for i in (1, 2, 3)]
    with Prefetch(layers, 1) as ahead:
        waiter = threading.Thread(target=ahead.wait_for, args=(layers[0],))
        waiter.start()
        time.sleep(0.1)
        assert waiter.is_alive() and read == []  # layer 1's read-ahead is still running
        release.set()
        waiter.join(5)
        assert not waiter.is_alive()
        for layer in layers[1:]:
            ahead.wait_for(layer)
    assert read == [1, 2, 3]
