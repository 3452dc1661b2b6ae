"""Full-mode checks of one layer, read once as a stream.

The stored bytes are counted and hashed (size and digest against the descriptor), their
magic bytes are compared with the media type, the decompressed tar is hashed (the diff_id)
and every member header is checked: whiteout names, duplicate paths, names that are
absolute or climb out with ``..`` (also hard-link targets), members written through a
symlink the same layer made, negative mtimes, setuid/setgid with world-writable.

Memory is bounded. Bytes pass through in 1 MiB chunks and are never kept. Duplicate paths
are found with :class:`PathSet`, an open-addressing table of 64-bit keyed BLAKE2b hashes of
the normalised paths in one ``array('Q')``: at most :data:`MAX_TRACKED_PATHS` (1,000,000)
paths per layer, so the table never exceeds 2**21 slots = 16 MiB (24 MiB while it last
doubles). Past the bound detection stops for the rest of that layer with a ``check-limit``
warning. The hash key is random per process, so a crafted archive cannot aim at a
collision; an accidental one (chance about n**2 / 2**65, 3e-8 at the bound) would report a
false duplicate. The symlinks a layer makes are kept as paths, at most
:data:`MAX_TRACKED_LINKS` (100,000, some 15 MB of short paths).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from array import array
from dataclasses import dataclass

from ..blobio.decompress import Compression, decompressing_reader, detect
from ..blobio.readers import ChainReader, Reader, drain, read_full
from ..blobio.verify import HashingReader
from ..errors import IntegrityError, LimitExceeded, MalformedInput, SizeMismatch
from ..model.digest import Digest
from ..model.media_types import layer_compression
from ..tario.paths import OPAQUE, WHITEOUT_META_PREFIX, WHITEOUT_PREFIX, is_escaping, normalize
from ..tario.reader import TarReader, iter_entries
from .documents import DOCKER_LAYERS, OCI_LAYERS
from .report import Report

MAX_TRACKED_PATHS = 1_000_000
MAX_TRACKED_LINKS = 100_000
_KEY = os.urandom(16)
_LINKS = (tarfile.SYMTYPE, tarfile.LNKTYPE)


class PathSet:
    """A set of path hashes in a flat array; ``add`` says whether the path is new."""

    def __init__(self, limit: int = MAX_TRACKED_PATHS) -> None:
        self.limit = limit
        self.count = 0
        self._slots = array("Q", bytes(8 * 1024))
        self._mask = 1023

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    def add(self, path: str) -> bool:
        key = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8, key=_KEY)
        value = int.from_bytes(key.digest(), "little") or 1  # 0 marks an empty slot
        if not self._insert(value):
            return False
        self.count += 1
        if 2 * self.count > len(self._slots):
            self._grow()
        return True

    def _insert(self, value: int) -> bool:
        slots, mask = self._slots, self._mask
        i = value & mask
        while True:
            current = slots[i]
            if current == 0:
                slots[i] = value
                return True
            if current == value:
                return False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(16 * len(old)))
        self._mask = len(self._slots) - 1
        for value in old:
            if value:
                self._insert(value)


@dataclass(frozen=True)
class LayerExpect:
    """What a layer's stored bytes should be; None where the source does not say."""

    index: int
    media_type: str | None
    digest: Digest | None
    size: int | None
    diff_id: Digest | None
    label: str


def check_layer(reader: Reader, expect: LayerExpect, report: Report) -> None:
    """Read ``reader`` (the layer's stored bytes) to its end, adding results to ``report``.

    A source that verifies bytes itself may raise IntegrityError while they stream; that
    becomes a ``layer-digest``/``layer-size``/``diff-id`` error and ends this layer's checks.
    """
    i = expect.index
    algorithm = expect.digest.algorithm if expect.digest and expect.digest.supported else "sha256"
    stored = HashingReader(reader, algorithm)
    try:
        tar_ok, plain = _scan(stored, expect, report)
    except IntegrityError as e:
        what = getattr(e, "what", "")
        if isinstance(e, SizeMismatch):
            report.add("layer-size", str(e), i)
        elif "diff_id" in what or (expect.digest is not None and expect.digest == expect.diff_id):
            report.add("diff-id", str(e), i)
        else:
            report.add("layer-digest", str(e), i)
        return
    if expect.size is not None and stored.size != expect.size:
        report.add(
            "layer-size",
            f"{expect.label} is {stored.size} bytes, its descriptor says {expect.size}",
            i,
        )
    elif expect.digest is not None and expect.digest.supported and stored.digest() != expect.digest:
        report.add(
            "layer-digest",
            f"{expect.label} has digest {stored.digest()}, expected {expect.digest}",
            i,
        )
    diff_id = expect.diff_id
    if plain is not None and tar_ok and diff_id is not None and diff_id.supported:
        if plain.digest() != diff_id:
            report.add(
                "diff-id",
                f"{expect.label} decompresses to {plain.digest()}, the config's diff_id is {diff_id}",
                i,
            )


def _scan(
    stored: HashingReader, expect: LayerExpect, report: Report
) -> tuple[bool, HashingReader | None]:
    i = expect.index
    head = read_full(stored, 4)
    actual = detect(head)
    media_type = expect.media_type
    if media_type is not None and media_type not in OCI_LAYERS and media_type not in DOCKER_LAYERS:
        drain(stored)  # not a layer type we know: only its size and digest are checked
        return False, None
    declared = layer_compression(media_type) if media_type is not None else None
    if declared is not None and declared != actual.value:
        report.add(
            "compression",
            f"{expect.label} is labelled {declared} ({media_type}) but its bytes are {actual}",
            i,
        )
    algorithm = (
        expect.diff_id.algorithm if expect.diff_id and expect.diff_id.supported else "sha256"
    )
    replay = ChainReader(head, stored)
    plain = HashingReader(
        replay
        if actual is Compression.NONE
        else decompressing_reader(replay, actual, what=expect.label),
        algorithm,
    )
    tar_ok = True
    try:
        _walk(iter_entries(plain, what=expect.label), report, i)
        drain(plain)
    except (MalformedInput, LimitExceeded) as e:
        report.add("tar-format", str(e), i)
        tar_ok = False
    drain(stored)  # whatever is left after a failure, so size and digest cover every byte
    return tar_ok, plain


def _walk(entries: TarReader, report: Report, i: int) -> None:
    seen = PathSet(MAX_TRACKED_PATHS)
    links: set[str] = set()  # symlinks made by this layer (at most MAX_TRACKED_LINKS)
    for entry in entries:
        info = entry.info
        if info.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
            continue
        name = info.name
        shown = repr(name[:200])
        _names(name, shown, info, report, i)
        path = normalize(name)
        base = path.rpartition("/")[2]
        if base.startswith(WHITEOUT_PREFIX):
            _whiteout(base, shown, info, report, i)
        if links:
            _through_link(path, shown, links, report, i)
        if info.issym() and len(links) < MAX_TRACKED_LINKS:
            links.add(path)
        if not seen.full:
            if not seen.add(path):
                report.add("duplicate-path", f"{path or '.'!r} appears more than once", i)
            elif seen.full:
                report.add(
                    "check-limit",
                    f"over {seen.limit} paths: duplicate paths are not looked for after {shown}",
                    i,
                )
        if info.mtime < 0:
            report.add("tar-timestamp", f"member {shown} has a negative mtime {info.mtime}", i)
        mode = info.mode
        if info.type not in _LINKS and mode & (stat.S_ISUID | stat.S_ISGID) and mode & stat.S_IWOTH:
            report.add(
                "tar-permissions",
                f"member {shown} is setuid/setgid and world-writable ({mode:o})",
                i,
            )


def _names(name: str, shown: str, info: tarfile.TarInfo, report: Report, i: int) -> None:
    """Absolute and escaping member names, and hard links whose target escapes."""
    if name.startswith("/"):
        report.add("absolute-path", f"member {shown} has an absolute path", i)
    if is_escaping(name):
        report.add("unsafe-path", f"member {shown} climbs above the root", i)
    if info.islnk():
        target = info.linkname
        if target.startswith("/"):
            report.add("absolute-path", f"hard link {shown} has an absolute target", i)
        if is_escaping(target):
            report.add("unsafe-path", f"hard link {shown} points above the root", i)


def _through_link(path: str, shown: str, links: set[str], report: Report, i: int) -> None:
    """A member below a symlink this layer made would be written wherever the link points."""
    cut = path.find("/")
    while cut > 0:
        if path[:cut] in links:
            report.add(
                "unsafe-path", f"member {shown} is written through the symlink {path[:cut]!r}", i
            )
            return
        cut = path.find("/", cut + 1)


def _whiteout(base: str, shown: str, info: tarfile.TarInfo, report: Report, i: int) -> None:
    if base != OPAQUE and base.startswith(WHITEOUT_META_PREFIX):
        report.add("whiteout-aufs", f"member {shown} is AUFS metadata, not a whiteout", i)
        return
    if base != OPAQUE and base[len(WHITEOUT_PREFIX) :] in ("", ".", ".."):
        report.add("whiteout", f"member {shown} is not a valid whiteout name", i)
        return
    if not info.isreg() or info.size:
        kind = "a non-empty file" if info.isreg() else "not a regular file"
        report.add("whiteout-content", f"whiteout {shown} is {kind}", i)
