"""Microbenchmark of occystrap.tario: read, pass-through and rewrite (+ sha256) throughput.

Run: ``.venv/bin/python bench/tario_bench.py [--baseline]``. Two archives are built in memory
with Python's tarfile: (a) 200 MB in 4 big files, (b) 40,000 small files (0-2 KiB). Each
case is timed (best of 3) reading from an ``io.BytesIO``; MB/s counts archive bytes.
``--baseline`` also times the same rewrite done with Python's tarfile module.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import tarfile
import time
from collections.abc import Callable, Iterable

from occystrap.tario import TarEntry, TarWriter, iter_entries, iter_tar_bytes, rewrite_header

MB = 1 << 20


def big_archive() -> bytes:
    block = os.urandom(MB)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(4):
            info = tarfile.TarInfo(f"data/blob{i}.bin")
            info.size = 50 * MB
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(block * 50))
    return out.getvalue()


def small_archive(count: int = 40_000) -> bytes:
    rng = random.Random(1)
    pool = os.urandom(4096)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(count):
            size = rng.randrange(0, 2048)
            info = tarfile.TarInfo(f"usr/share/doc/package-{i // 50:04d}/file-{i:05d}.txt")
            info.size = size
            info.mtime = 1_700_000_000 + i
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(pool[:size]))
    return out.getvalue()


def read_only(data: bytes) -> int:
    return sum(1 for _ in iter_entries(io.BytesIO(data)))


def read_bodies(data: bytes) -> int:
    count = 0
    for entry in iter_entries(io.BytesIO(data)):
        while entry.body.read(MB):
            pass
        count += 1
    return count


def _hash(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def pass_through_sha(data: bytes) -> str:
    return _hash(iter_tar_bytes(iter_entries(io.BytesIO(data))))


def rewrite_sha(data: bytes) -> str:
    entries = (rewrite_header(e, mtime=0) for e in iter_entries(io.BytesIO(data)))
    return _hash(iter_tar_bytes(entries))


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)


def pass_through_writer(data: bytes) -> int:
    writer = TarWriter(_Null())
    entry: TarEntry
    for entry in iter_entries(io.BytesIO(data)):
        writer.write_entry(entry)
    return writer.close()


def rewrite_writer(data: bytes) -> int:
    writer = TarWriter(_Null())
    for entry in iter_entries(io.BytesIO(data)):
        writer.write_entry(rewrite_header(entry, mtime=0))
    return writer.close()


def sha_only(data: bytes) -> str:
    return _hash(data[i : i + MB] for i in range(0, len(data), MB))


def tarfile_rewrite_sha(data: bytes) -> str:
    class Hashing:
        def __init__(self) -> None:
            self.h = hashlib.sha256()

        def write(self, chunk: bytes) -> int:
            self.h.update(chunk)
            return len(chunk)

    sink = Hashing()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as src:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as dst:  # type: ignore[call-overload]
            for member in src:
                member.mtime = 0
                dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    return sink.h.hexdigest()


def timed(fn: Callable[[bytes], object], data: bytes, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", action="store_true", help="also time Python's tarfile")
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[bytes], object]]] = [
        ("sha256 only", sha_only),
        ("read headers, skip bodies", read_only),
        ("read headers + bodies", read_bodies),
        ("pass-through TarWriter (no hash)", pass_through_writer),
        ("rewrite mtime TarWriter (no hash)", rewrite_writer),
        ("pass-through + sha256", pass_through_sha),
        ("rewrite mtime + sha256", rewrite_sha),
    ]
    if args.baseline:
        cases.append(("tarfile rewrite mtime + sha256", tarfile_rewrite_sha))
    for label, data in (
        ("(a) 4 big files", big_archive()),
        ("(b) 40,000 small files", small_archive()),
    ):
        entries = read_only(data)
        print(f"{label}: {len(data) / MB:.0f} MiB archive, {entries} entries")
        for name, fn in cases:
            seconds = timed(fn, data)
            print(
                f"  {name:36s} {len(data) / MB / seconds:8.0f} MiB/s"
                f" {entries / seconds:10.0f} entries/s"
            )
    small = small_archive(100)
    assert _hash(iter_tar_bytes(iter_entries(io.BytesIO(small)), record_size=10240)) == sha_only(
        small
    )


if __name__ == "__main__":
    main()
