"""The header-edit path of the filter chain (``copy_entries.through_chain``): simple members
are edited as bytes, in runs, instead of one entry each. It must give exactly the bytes, the
change verdict and the errors that the entry-by-entry path gives, on every kind of tar."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_filters import exclude, normalize, run_chain, view

from lab.tarmembers import MTIME, member, with_checksum
from lab.tools import require, run
from occystrap.copy_entries import ChangeTracker, through_chain
from occystrap.errors import LimitExceeded, MalformedInput
from occystrap.filters.base import Filter, LayerView, PassThrough
from occystrap.filters.normalize_timestamps import NormalizeTimestamps
from occystrap.filters.options import NormalizeOptions
from occystrap.tario import iter_entries, iter_tar_bytes
from occystrap.tario.encode import pax_block
from occystrap.tario.entry import MemberRun, TarEntry

CAP = bytes.fromhex("0100000200040000000000000000000000000000").decode("utf-8", "surrogateescape")


class Entrywise(PassThrough):
    """A filter without its declared edit: every member goes through it as an entry."""

    rewrites_layers = True

    def __init__(self, inner: Filter) -> None:
        self.inner = inner
        self.name = inner.name

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        return self.inner.process(entries, layer)


class DropsDirs(NormalizeTimestamps):
    """Declares its edit but drops directories (breaking the edit's contract)."""

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        for entry in super().process(entries, layer):
            if entry.info.type != tarfile.DIRTYPE:
                yield entry


def tar_of(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int) -> bytes:
    """The members in tarfile's ``fmt``, leaving out those it cannot hold (USTAR)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8") as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            try:
                info.tobuf(fmt, "utf-8", "surrogateescape")
            except ValueError:
                continue
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def block_of(info: tarfile.TarInfo, size: int = 0) -> bytes:
    info.size = size
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def members() -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every kind of member, some with mtime 0 already, some over a MiB."""
    return [
        (member("etc", tarfile.DIRTYPE, mode=0o755), b""),
        (member("etc/hosts", uname="root", gname="root"), b"127.0.0.1 localhost\n"),
        (member("etc/hard", tarfile.LNKTYPE, linkname="etc/hosts"), b""),
        (member("etc/sym", tarfile.SYMTYPE, linkname="hosts", mtime=0), b""),
        (member("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3), b""),
        (member("run/fifo", tarfile.FIFOTYPE), b""),
        (member("a" * 60 + "/" + "b" * 70), b"splittable long name"),
        (member("x/" + "y" * 120), b"component over 100"),
        (member("big1"), os.urandom(3 << 20 | 77)),
        *(
            (member(f"d/f{i}", mtime=0 if i % 3 else MTIME), b"%d" % i * (i % 900))
            for i in range(300)
        ),
        (member("uid", uid=3_000_000), b"big ids"),
        (member("caps", pax_headers={"SCHILY.xattr.security.capability": CAP}), b"x"),
        (member("ünïcødé"), b"unicode"),
        (member("big2", mtime=0), os.urandom(1 << 20)),
        (member("last"), b"end"),
    ]


def crafted() -> bytes:
    """Headers the edit must leave to the full parse, between simple members."""
    file_block = block_of(member("f"), 5)
    gnu_times = member("gnu-atime")
    gnu = gnu_times.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    gnu = with_checksum(gnu[:345] + b"14547554121\0" + gnu[357:])  # an access time
    spaced = block_of(member("spaced", mtime=0))  # mtime 0 ending in a space
    spaced = with_checksum(spaced[:147] + b" " + spaced[148:])
    parts = [
        file_block + b"hello".ljust(512, b"\0"),
        block_of(member("link-with-size", tarfile.SYMTYPE, linkname="f"), 100),
        block_of(member("old-dir/", tarfile.AREGTYPE), 0),
        gnu,
        spaced,
        block_of(member("plain", mtime=0)),
        pax_block({"comment": "no times"}, tarfile.XHDTYPE) + block_of(member("pax"), 0),
        pax_block({"atime": "1.5", "mtime": "7"}, tarfile.XHDTYPE) + block_of(member("t"), 0),
        file_block + b"again".ljust(512, b"\0"),
    ]
    return b"".join(parts) + bytes(1024)


def with_global(records: dict[str, str]) -> bytes:
    """Simple members, a PAX global header, then more simple members."""
    first = tar_of([(member(f"a{i}"), b"a" * i) for i in range(20)], tarfile.USTAR_FORMAT)
    second = tar_of([(member(f"b{i}"), b"b" * i) for i in range(20)], tarfile.USTAR_FORMAT)
    reader = iter_entries(io.BytesIO(first))
    for _ in reader:
        pass
    end = reader.end_offset
    return first[:end] + pax_block(records, tarfile.XGLTYPE) + second


def gnu_tars(tmp_path: Path) -> list[bytes]:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(200):
        (src / "d" / f"f{i}").write_bytes(os.urandom(i * 37))
    (src / "big").write_bytes(os.urandom(2 << 20))
    os.symlink("big", src / "ln")
    out = []
    for fmt in ("gnu", "posix", "ustar", "v7"):
        path = tmp_path / f"{fmt}.tar"
        run([require("tar"), f"--format={fmt}", "-cf", path, "-C", src, "."])
        out.append(path.read_bytes())
    return out


def corpus(tmp_path: Path) -> dict[str, bytes]:
    found = {f"tarfile-{f}": tar_of(members(), f) for f in (0, 1, 2)}
    found["crafted"] = crafted()
    found["global-mtime"] = with_global({"mtime": "5"})
    found["global-emptied"] = with_global({"mtime": ""})
    for i, tar in enumerate(gnu_tars(tmp_path)):
        found[f"gnu-tar-{i}"] = tar
    return found


def runs_in(data: bytes, filters: list[Filter]) -> int:
    state = ChangeTracker()
    found = through_chain(iter_entries(io.BytesIO(data)), filters, view(), state)
    return sum(isinstance(item, MemberRun) for item in found)


@pytest.mark.parametrize("ts", [0, MTIME])
def test_runs_give_the_bytes_and_verdict_of_entries(tmp_path: Path, ts: int) -> None:
    for name, tar in corpus(tmp_path).items():
        fast = run_chain(tar, [normalize(ts)])
        slow = run_chain(tar, [Entrywise(normalize(ts))])
        assert fast == slow, name
        assert runs_in(tar, [Entrywise(normalize(ts))]) == 0
        # GNU tar's posix format gives every member a PAX header; v7 is never simple
        if name not in ("gnu-tar-1", "gnu-tar-3"):
            assert runs_in(tar, [normalize(ts)]) > 0, name


def test_runs_stop_at_a_global_header() -> None:
    tar = with_global({"comment": "x"})
    state = ChangeTracker()
    found = list(through_chain(iter_entries(io.BytesIO(tar)), [normalize(0)], view(), state))
    kinds = [x.info.type if isinstance(x, TarEntry) else "run" for x in found]
    at = kinds.index(tarfile.XGLTYPE)
    assert kinds[:at] == [b"0", "run"]  # the first member fills the reader's buffer
    assert "run" not in kinds[at:] and len(kinds) == at + 21
    assert state.entries_in == state.entries_out == 41


def test_unchanged_members_keep_the_layer_unchanged(tmp_path: Path) -> None:
    tar = tar_of([(member(f"f{i}", mtime=0), b"x" * i) for i in range(50)], tarfile.GNU_FORMAT)
    out, changed = run_chain(tar, [normalize(0)])
    assert runs_in(tar, [normalize(0)]) == 1
    assert (out, changed) == (tar, False)
    out, changed = run_chain(tar, [normalize(1)])
    assert changed and out != tar
    assert [m.mtime for m in tarfile.open(fileobj=io.BytesIO(out))] == [1] * 50


def test_a_chain_with_a_filter_without_an_edit_takes_no_runs() -> None:
    tar = tar_of(members(), tarfile.GNU_FORMAT)
    assert runs_in(tar, [normalize(0), exclude("d/f1*")]) == 0
    assert runs_in(tar, [normalize(0), normalize(5)]) > 0


def test_a_filter_breaking_the_contract_loses_the_runs_not_its_drops() -> None:
    dirs = [(member(f"dir{i}", tarfile.DIRTYPE), b"") for i in range(20)]
    tar = tar_of(members()[:30] + dirs + members()[30:], tarfile.GNU_FORMAT)
    options = NormalizeOptions(ts=0)
    out, changed = run_chain(tar, [DropsDirs(options)])
    assert (out, changed) == run_chain(tar, [Entrywise(DropsDirs(options))])
    assert not [m for m in tarfile.open(fileobj=io.BytesIO(out)) if m.isdir()]
    assert runs_in(tar, [DropsDirs(options)]) == 0  # the first member is a directory


def _outcome(data: bytes, filters: list[Filter]) -> str:
    try:
        out, changed = run_chain(data, filters)
    except (MalformedInput, LimitExceeded) as e:
        return f"{type(e).__name__}: {e}"
    return f"{changed} {hashlib.sha256(out).hexdigest()}"


_DAMAGED = [tar_of(members()[:40], f) for f in (0, 1, 2)] + [crafted()]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_tars_give_the_same_error_either_way(data: st.DataObject) -> None:
    tar = _DAMAGED[data.draw(st.integers(0, len(_DAMAGED) - 1))]
    how = data.draw(st.sampled_from(["flip", "cut"]))
    if how == "flip":
        at = data.draw(st.integers(0, min(len(tar), 30_000) - 1))
        tar = tar[:at] + bytes([data.draw(st.integers(0, 255))]) + tar[at + 1 :]
    else:
        tar = tar[: data.draw(st.integers(0, len(tar)))]
    ts = data.draw(st.sampled_from([0, MTIME]))
    assert _outcome(tar, [normalize(ts)]) == _outcome(tar, [Entrywise(normalize(ts))])


class Foreign:
    """A filter written elsewhere, without PassThrough and without ``header_edit``."""

    name = "foreign"
    rewrites_layers = True
    observes_layers = False

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        return entries


def test_a_filter_without_the_attribute_takes_the_entry_path() -> None:
    tar = tar_of(members(), tarfile.GNU_FORMAT)
    chain: list[Filter] = [normalize(0), Foreign()]  # type: ignore[list-item]
    assert runs_in(tar, chain) == 0
    assert run_chain(tar, chain) == run_chain(tar, [Entrywise(normalize(0))])


class _SmallFilesTar:
    """A tar of ``count`` 4 KiB members made as it is read (never whole in memory)."""

    def __init__(self, count: int) -> None:
        head = block_of(member("f"), 4096)
        self._member = head + b"x" * 4096
        self._left = count
        self._tail = bytes(1024)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while len(self._buf) < n and (self._left or self._tail):
            batch = min(self._left, 256)
            if batch:
                self._buf += self._member * batch
                self._left -= batch
            else:
                self._buf, self._tail = self._buf + self._tail, b""
        data, self._buf = self._buf[:n], self._buf[n:]
        return data


def _peak_of_runs(count: int) -> tuple[int, int]:
    """Traced peak memory, and members that went in runs, normalizing ``count`` files."""
    state = ChangeTracker()
    in_runs = total = 0

    def counted(items: Iterator[TarEntry | MemberRun]) -> Iterator[TarEntry | MemberRun]:
        nonlocal in_runs
        for item in items:
            if isinstance(item, MemberRun):
                in_runs += item.members
            yield item

    tracemalloc.start()
    try:
        reader = iter_entries(_SmallFilesTar(count))
        for chunk in iter_tar_bytes(counted(through_chain(reader, [normalize(0)], view(), state))):
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state.entries_in == count and total == count * (512 + 4096) + 1024
    return peak, in_runs


def test_runs_stream_in_bounded_memory() -> None:
    """Runs hold at most the reader's buffer: peak memory does not grow with the layer."""
    small, taken_small = _peak_of_runs(8_000)  # 37 MB
    big, taken_big = _peak_of_runs(32_000)  # 147 MB
    assert taken_small > 7_900 and taken_big > 31_500
    assert big < 16 << 20 and big < small * 1.5 + (1 << 20), (small, big)
