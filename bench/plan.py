"""What goes into each layer of the benchmark corpus: paths, kinds, sizes, modes, times.

A plan is a list of ``Entry`` records, cheap to hold (no file contents) and fully
determined by the parameters and the seed. ``bench.corpus`` turns plans into tar streams.

The four layers, at scale 1 (sizes are file content; tar headers add about 4%):

1. ``small``: 40,000 real-looking text files (Python, C, docs, config, JSON, CSV) of
   400 MB in a package-like tree under ``usr/`` and ``etc/``, plus symlinks and hardlinks;
2. ``random``: 200 MB of incompressible data in 8 files;
3. ``text``: 50 MB of compressible logs, CSV, JSON and Markdown in 2,000 files;
4. ``patch``: a small layer with whiteouts (a file, a directory, an opaque directory, a
   file of layer 3) and a few new and changed files.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

EntryType = Literal["dir", "file", "random", "symlink", "hardlink"]
MB = 1_000_000

SMALL_FILES = 40_000
SMALL_BYTES = 400 * MB
RANDOM_BYTES = 200 * MB
RANDOM_SPLIT = (0.4, 0.2, 0.15, 0.1, 0.05, 0.05, 0.03, 0.02)
TEXT_FILES = 2_000
TEXT_BYTES = 50 * MB
MTIME_BASE = 1_690_000_000
MTIME_SPAN = 30_000_000
SMALL_KINDS = ("py", "py", "py", "c", "c", "md", "md", "txt", "conf", "json", "csv")
TEXT_KINDS = ("log", "log", "csv", "json", "md")


@dataclass(frozen=True)
class Entry:
    """One tar entry. ``kind`` is the text kind of a ``file``; ``link`` the target of links."""

    path: str
    type: EntryType
    size: int = 0
    kind: str = ""
    mode: int = 0o644
    mtime: int = MTIME_BASE
    link: str = ""


def _names(rng: random.Random, count: int) -> list[str]:
    syll = "ba ko mi tu re sa lin dex por gal vin ter mon qua zed fi no ru le xo".split()
    seen: set[str] = set()
    while len(seen) < count:
        seen.add("".join(rng.choice(syll) for _ in range(rng.randint(2, 4))))
    return sorted(seen)


def _sizes(rng: random.Random, count: int, total: int, sigma: float, cap: int) -> list[int]:
    """``count`` log-normal sizes scaled to sum to about ``total`` (each at most ``cap``)."""
    raw = [rng.lognormvariate(0.0, sigma) for _ in range(count)]
    factor = total / max(sum(raw), 1e-9)
    return [min(cap, int(x * factor)) for x in raw]


def _small_path(rng: random.Random, kind: str, pkg: str, name: str, i: int) -> str:
    if kind == "py":
        sub = rng.choice(("", "", "core/", "utils/", "tests/"))
        return f"usr/lib/python3/dist-packages/{pkg}/{sub}{name}_{i}.py"
    if kind == "c":
        top = rng.choice(("usr/include", "usr/src"))
        return f"{top}/{pkg}/{name}_{i}.{'h' if top == 'usr/include' else 'c'}"
    if kind in ("md", "txt"):
        return f"usr/share/doc/{pkg}/{name.upper() if kind == 'txt' else name}_{i}.{kind}"
    if kind == "conf":
        return f"etc/{pkg}/{name}_{i}.conf"
    if kind == "json":
        return f"usr/share/{pkg}/{name}_{i}.json"
    return f"usr/share/{pkg}/data/{name}_{i}.csv"


def small_layer(seed: int, scale: float) -> list[Entry]:
    """Layer 1: many small real-looking text files, symlinks and hardlinks."""
    rng = random.Random(seed * 1000 + 1)
    count = max(8, round(SMALL_FILES * scale))
    pkgs = _names(rng, max(2, count // 50))
    names = _names(rng, 400)
    sizes = _sizes(rng, count, round(SMALL_BYTES * scale), 1.1, 2 * 1024 * 1024)
    files: list[Entry] = []
    for i, size in enumerate(sizes):
        kind = rng.choice(SMALL_KINDS)
        path = _small_path(rng, kind, rng.choice(pkgs), rng.choice(names), i)
        mode = 0o755 if kind == "py" and rng.random() < 0.05 else 0o644
        mtime = MTIME_BASE + rng.randrange(MTIME_SPAN)
        files.append(Entry(path, "file", size if rng.random() > 0.01 else 0, kind, mode, mtime))
    files.sort(key=lambda e: e.path)
    licences = [
        Entry(f"usr/share/base-licenses/{n}", "file", 9000 + 1000 * k, "txt")
        for k, n in enumerate(("Apache-2.0", "GPL-2", "MIT"))
    ]
    links = [
        Entry(
            f"usr/bin/{pkg}",
            "symlink",
            link=f"../lib/python3/dist-packages/{pkg}/__main__.py",
            mode=0o777,
        )
        for pkg in pkgs[::4]
    ]
    links += [
        Entry(f"usr/share/doc/{pkg}/copyright", "hardlink", link=rng.choice(licences).path)
        for pkg in pkgs[1::3]
    ]
    return licences + files + links


def random_layer(seed: int, scale: float) -> list[Entry]:
    """Layer 2: incompressible data in a few big files."""
    total = round(RANDOM_BYTES * scale)
    mtime = MTIME_BASE + MTIME_SPAN
    return [
        Entry(f"opt/bench-app/models/weights-{i}.bin", "random", math.floor(total * f), mtime=mtime)
        for i, f in enumerate(RANDOM_SPLIT)
    ]


def text_layer(seed: int, scale: float) -> list[Entry]:
    """Layer 3: compressible data files (logs, CSV, JSON, Markdown)."""
    rng = random.Random(seed * 1000 + 3)
    count = max(2, round(TEXT_FILES * scale))
    sizes = _sizes(rng, count, round(TEXT_BYTES * scale), 0.6, 1024 * 1024)
    entries = []
    for i, size in enumerate(sizes):
        kind = rng.choice(TEXT_KINDS)
        ext = {"log": "log", "csv": "csv", "json": "json", "md": "md"}[kind]
        month = 1 + i * 12 // count
        path = f"srv/app/data/2023/{month:02d}/{kind}-{i:05d}.{ext}"
        entries.append(
            Entry(path, "file", size, kind, mtime=MTIME_BASE + rng.randrange(MTIME_SPAN))
        )
    return entries


def patch_layer(small: list[Entry], text: list[Entry]) -> list[Entry]:
    """Layer 4: whiteouts of a file, a directory, a layer-3 file; an opaque dir; new files."""
    files = [e for e in small if e.type == "file"]
    gone = next(e for e in files if e.path.startswith("usr/lib/"))
    conf_dirs = sorted({e.path.rsplit("/", 1)[0] for e in files if e.path.startswith("etc/")})
    doc_dirs = sorted(
        {e.path.rsplit("/", 1)[0] for e in files if e.path.startswith("usr/share/doc/")}
    )
    changed = next(e for e in files if e.kind in ("md", "txt"))
    mtime = MTIME_BASE + MTIME_SPAN + 1000
    out = [
        Entry("etc/bench-release", "file", 120, "conf", mtime=mtime),
        Entry(changed.path, "file", changed.size + 500, changed.kind, mtime=mtime),
        Entry(_wh(gone.path), "file", mtime=mtime),
        Entry(_wh(text[0].path), "file", mtime=mtime),
    ]
    if conf_dirs:
        out.append(Entry(_wh(conf_dirs[0]), "file", mtime=mtime))
    if doc_dirs:
        out.append(Entry(f"{doc_dirs[-1]}/.wh..wh..opq", "file", mtime=mtime))
        out.append(Entry(f"{doc_dirs[-1]}/README.md", "file", 2000, "md", mtime=mtime))
    return out


def _wh(path: str) -> str:
    head, _, name = path.rpartition("/")
    return f"{head}/.wh.{name}" if head else f".wh.{name}"


def layers(seed: int, scale: float) -> list[list[Entry]]:
    """The four layer plans, bottom first."""
    small, text = small_layer(seed, scale), text_layer(seed, scale)
    return [small, random_layer(seed, scale), text, patch_layer(small, text)]
