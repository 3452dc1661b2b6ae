"""Measure gzip/zstd speed and ratio for choosing occystrap's compression defaults.

Usage: .venv/bin/python bench/compression.py [--runs N] [--text-mib 40] [--bin-mib 35] [--random-mib 25]

The corpus is built here, deterministically per machine: a tar of files under
/usr/share (text-like), a tar of files under /usr/lib (binaries), and seeded
pseudo-random bytes (incompressible). Each candidate compresses each part in
1 MiB chunks on one thread; the best of ``--runs`` timings is kept. The result is
a Markdown table on stdout, plus the default gzip level the rule picks: the
fastest ISA-L level whose output is at most 10% larger than zlib level 6.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable

import isal
import zstandard
from zlib_ng import zlib_ng

from occystrap.blobio import Compression, decompressing_reader, drain, make_compressor
from occystrap.blobio.compression import GzipCompressor, ZstdCompressor

MIB = 1 << 20
CHUNK = MIB


def tar_of(roots: Iterable[str], limit: int) -> bytes:
    """A tar of regular files under ``roots`` in sorted order, cut at ``limit`` bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for root in roots:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    path = os.path.join(dirpath, name)
                    if os.path.islink(path) or not os.path.isfile(path):
                        continue
                    try:
                        if os.path.getsize(path) > 4 * MIB:
                            continue
                        tf.add(path, recursive=False)
                    except OSError:
                        continue
                    if buf.tell() >= limit:
                        return buf.getvalue()[:limit]
    return buf.getvalue()[:limit]


def corpus(text_mib: int, bin_mib: int, random_mib: int) -> dict[str, bytes]:
    return {
        "text": tar_of(["/usr/share"], text_mib * MIB),
        "bin": tar_of(["/usr/lib"], bin_mib * MIB),
        "random": random.Random(0).randbytes(random_mib * MIB),
    }


Factory = Callable[[], object]


def stdlib_gzip(level: int) -> Factory:
    return lambda: zlib.compressobj(level, zlib.DEFLATED, 31)


def zlibng_gzip(level: int) -> Factory:
    return lambda: zlib_ng.compressobj(level, zlib_ng.DEFLATED, 31)


def run_compress(factory: Factory, data: bytes) -> tuple[float, bytes]:
    view = memoryview(data)
    start = time.perf_counter()
    c = factory()
    parts = [c.compress(view[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]  # type: ignore[attr-defined]
    parts.append(c.flush())  # type: ignore[attr-defined]
    return time.perf_counter() - start, b"".join(parts)


def run_decompress(compression: Compression, blob: bytes) -> float:
    start = time.perf_counter()
    drain(decompressing_reader(io.BytesIO(blob), compression))
    return time.perf_counter() - start


def stdlib_gunzip(blob: bytes) -> float:
    start = time.perf_counter()
    src = io.BytesIO(blob)
    d = zlib.decompressobj(31)
    while not d.eof:
        data = d.unconsumed_tail or src.read(CHUNK)
        d.decompress(data, CHUNK)
    return time.perf_counter() - start


def zlibng_gunzip(blob: bytes) -> float:
    start = time.perf_counter()
    src = io.BytesIO(blob)
    d = zlib_ng.decompressobj(31)
    while not d.eof:
        data = d.unconsumed_tail or src.read(CHUNK)
        d.decompress(data, CHUNK)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--text-mib", type=int, default=40)
    ap.add_argument("--bin-mib", type=int, default=35)
    ap.add_argument("--random-mib", type=int, default=25)
    args = ap.parse_args()

    parts = corpus(args.text_mib, args.bin_mib, args.random_mib)
    total_in = sum(len(p) for p in parts.values())
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"isal {isal.__version__}, zstandard {zstandard.__version__} (libzstd "
        f"{'.'.join(map(str, zstandard.ZSTD_VERSION))}), zlib {zlib.ZLIB_RUNTIME_VERSION}, "
        f"zlib-ng {zlib_ng.ZLIBNG_VERSION}"
    )
    print(
        "corpus: "
        + ", ".join(f"{k} {len(v) / MIB:.0f} MiB" for k, v in parts.items())
        + f", total {total_in / MIB:.0f} MiB; best of {args.runs} runs\n"
    )

    candidates: list[tuple[str, Factory]] = [
        *((f"isal {lvl} (occystrap)", (lambda lvl=lvl: GzipCompressor(lvl))) for lvl in range(4)),
        ("zlib 1", stdlib_gzip(1)),
        ("zlib 6", stdlib_gzip(6)),
        ("zlib-ng 1", zlibng_gzip(1)),
        ("zlib-ng 6", zlibng_gzip(6)),
        ("zstd 1 (occystrap)", lambda: ZstdCompressor(1)),
        ("zstd 3 (occystrap)", lambda: ZstdCompressor(3)),
        ("zstd 3, 2 threads", lambda: ZstdCompressor(3, threads=2)),
    ]
    # Rounds interleave the candidates so a noisy neighbour slows all of them alike;
    # the best time per (candidate, part) is kept.
    best: dict[tuple[str, str], float] = {}
    blobs: dict[str, dict[str, bytes]] = {name: {} for name, _ in candidates}
    for _ in range(args.runs):
        for name, factory in candidates:
            for part, data in parts.items():
                dt, out = run_compress(factory, data)
                best[name, part] = min(best.get((name, part), dt), dt)
                blobs[name][part] = out
    rows = {
        name: (
            sum(best[name, part] for part in parts),
            {part: len(blobs[name][part]) for part in parts},
        )
        for name, _ in candidates
    }

    ref = sum(rows["zlib 6"][1].values())
    ref_compressible = rows["zlib 6"][1]["text"] + rows["zlib 6"][1]["bin"]
    print(
        "| compressor | MB/s (all) | ratio text | ratio bin | ratio random | ratio all "
        "| size vs zlib 6 (all / text+bin) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (seconds, sizes) in rows.items():
        total = sum(sizes.values())
        compressible = sizes["text"] + sizes["bin"]
        print(
            f"| {name} | {total_in / seconds / 1e6:.0f} "
            + " ".join(f"| {sizes[p] / len(parts[p]):.3f}" for p in parts)
            + f" | {total / total_in:.3f} | {100 * (total / ref - 1):+.1f}% / "
            f"{100 * (compressible / ref_compressible - 1):+.1f}% |"
        )

    print("\n| decompressor | MB/s (output) |")
    print("|---|---:|")
    gz = blobs["isal 1 (occystrap)"]
    zs = blobs["zstd 3 (occystrap)"]

    def isal_gunzip(blob: bytes) -> float:
        return run_decompress(Compression.GZIP, blob)

    decompressors: list[tuple[str, Callable[[bytes], float]]] = [
        ("gzip via isal (occystrap decompressing_reader)", isal_gunzip),
        ("gzip via stdlib zlib", stdlib_gunzip),
        ("gzip via zlib-ng", zlibng_gunzip),
    ]
    for name, fn in decompressors:
        seconds = min(sum(fn(b) for b in gz.values()) for _ in range(args.runs))
        print(f"| {name} | {total_in / seconds / 1e6:.0f} |")
    seconds = min(
        sum(run_decompress(Compression.ZSTD, b) for b in zs.values()) for _ in range(args.runs)
    )
    print(
        f"| zstd via zstandard (occystrap decompressing_reader) | {total_in / seconds / 1e6:.0f} |"
    )

    # The rule for DEFAULT_GZIP_LEVEL: fastest isal level within +10% of zlib 6, on the
    # whole corpus and on its compressible part alike.
    ok = []
    for lvl in range(4):
        seconds, sizes = rows[f"isal {lvl} (occystrap)"]
        if (
            sum(sizes.values()) <= 1.10 * ref
            and sizes["text"] + sizes["bin"] <= 1.10 * ref_compressible
        ):
            ok.append((seconds, lvl))
    choice = min(ok)[1] if ok else None
    print(f"\nfastest isal level within +10% of zlib 6: {choice}")

    # Determinism: two different input splits must give the same gzip bytes.
    data = parts["text"]
    a = make_compressor(Compression.GZIP)
    out_a = a.compress(data) + a.flush()
    b = make_compressor(Compression.GZIP)
    rnd = random.Random(1)
    pos, pieces = 0, []
    while pos < len(data):
        step = rnd.randint(1, 3 * MIB)
        pieces.append(b.compress(data[pos : pos + step]))
        pos += step
    out_b = b"".join(pieces) + b.flush()
    print(f"gzip output identical across input splits: {out_a == out_b}")


if __name__ == "__main__":
    main()
