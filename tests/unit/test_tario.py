"""occystrap.tario: reader, writer and paths, judged by GNU tar and Python's tarfile."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import tarfile
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.tarmembers import MTIME, member, with_checksum
from lab.tools import require, run
from occystrap.errors import InvalidOption, LimitExceeded, MalformedInput
from occystrap.tario import (
    TarEntry,
    TarWriter,
    encode_header,
    iter_entries,
    iter_tar_bytes,
    new_entry,
    paths,
    rewrite_header,
)
from occystrap.tario.encode import pax_block
from occystrap.tario.entry import TIME_RECORDS, ParsedInfo
from occystrap.tario.reader import checksum

CAPABILITY = bytes.fromhex("0100000200040000000000000000000000000000")  # cap_net_bind_service+ep


# ---------------------------------------------------------------- helpers


def read_all(data: bytes) -> list[tuple[tarfile.TarInfo, bytes | None, bytes]]:
    return [(e.info, e.raw_header, e.body.read()) for e in iter_entries(io.BytesIO(data))]


def pass_through(data: bytes, record_size: int = 10240) -> bytes:
    out = io.BytesIO()
    writer = TarWriter(out, record_size=record_size)
    for entry in iter_entries(io.BytesIO(data)):
        writer.write_entry(entry)
    assert writer.close() == len(out.getvalue())
    return out.getvalue()


def reencode(data: bytes, **changes: Any) -> bytes:
    entries = (rewrite_header(e, **changes) for e in iter_entries(io.BytesIO(data)))
    return b"".join(iter_tar_bytes(entries))


def describe(data: bytes) -> list[tuple[Any, ...]]:
    """Metadata and content digest of every member, as Python's tarfile reads them."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8") as tf:
        for m in tf:
            body = tf.extractfile(m) if m.isreg() else None
            digest = hashlib.sha256(body.read()).hexdigest() if body else None
            extra = {
                k: v
                for k, v in m.pax_headers.items()
                if k not in ("path", "linkpath", "size", "uid", "gid", "uname", "gname")
                and k not in ("mtime", "hdrcharset")
            }
            out.append(
                (m.name, m.type, m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime, m.size)
                + (m.linkname, m.devmajor, m.devminor, extra, digest)
            )
    return out


def gnu_listing(path: Path) -> str:
    return str(run([require("tar"), "--numeric-owner", "--full-time", "-tvf", path]).stdout)


def header(
    name: str = "file",
    *,
    size: int = 0,
    kind: bytes = tarfile.REGTYPE,
    fmt: int = tarfile.USTAR_FORMAT,
    **fields: Any,
) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime = size, kind, MTIME
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(fmt, "utf-8", "surrogateescape")  # type: ignore[arg-type]


def tar_of(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8") as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def synthetic_members() -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every kind of member, built with tarfile (no file system needed)."""
    return [
        (member("etc", tarfile.DIRTYPE, mode=0o755), b""),
        (member("etc/hosts", mode=0o644, uname="root", gname="root"), b"127.0.0.1 localhost\n"),
        (member("etc/hard", tarfile.LNKTYPE, linkname="etc/hosts"), b""),
        (member("etc/sym", tarfile.SYMTYPE, linkname="hosts"), b""),
        (member("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), b""),
        (member("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), b""),
        (member("run/fifo", tarfile.FIFOTYPE), b""),
        (member("a" * 60 + "/" + "b" * 70), b"splittable long name"),
        (member("bin/setuid", mode=0o4755), b"\x7fELF"),
        (member("empty"), b""),
    ]


def big_members() -> list[tuple[tarfile.TarInfo, bytes]]:
    """Members that need GNU or PAX extensions."""
    caps = CAPABILITY.decode("utf-8", "surrogateescape")
    return [
        (member("p" * 90 + "/" + "q" * 90 + "/" + "r" * 90), b"path over 255"),
        (member("x/" + "y" * 120), b"component over 100"),
        (member("ünïcødé/日本語.txt"), b"unicode"),
        (member("uid", uid=3_000_000, gid=3_000_001), b"big ids"),
        (member("sym", tarfile.SYMTYPE, linkname="t" * 150), b""),
        (member("caps", pax_headers={"SCHILY.xattr.security.capability": caps}), b"x"),
        (member("user", pax_headers={"SCHILY.xattr.user.k": "v=1\n2"}), b"y"),
        (member("owner", uname="u" * 40, gname="g" * 33), b"long owner names"),
    ]


def need_root() -> None:
    """Device nodes, chown and security.* xattrs need root: fail in CI, skip elsewhere."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("this test must run as root in CI", pytrace=False)
        pytest.skip("needs root")


def build_tree(root: Path, *, extended: bool) -> None:
    """A directory tree with every file type GNU tar stores."""
    need_root()
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / "empty").write_bytes(b"")
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "sub" / "data.bin").write_bytes(os.urandom(5000))
    os.symlink("hello.txt", root / "link")
    os.link(root / "hello.txt", root / "hard")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / ("d" * 40)).mkdir()
    (root / ("d" * 40) / ("f" * 70)).write_bytes(b"long but splittable")
    if extended:
        deep = root / ("p" * 90) / ("q" * 90)
        deep.mkdir(parents=True)
        (deep / ("r" * 90)).write_bytes(b"over 255")
        (root / "ünïcødé-日本.txt").write_bytes(b"unicode")
        os.symlink("t" * 150, root / "longlink")
        big = root / "bigids"
        big.write_bytes(b"ids")
        os.chown(big, 3_000_000, 3_000_001, follow_symlinks=False)
        caps = root / "caps"
        caps.write_bytes(b"caps")
        os.setxattr(caps, "user.note", b"a=b\nc")
        os.setxattr(caps, "security.capability", CAPABILITY)
    for path in [*root.rglob("*"), root]:
        os.utime(path, ns=(MTIME * 10**9 + 123_456_789,) * 2, follow_symlinks=False)


def gnu_tar(tmp_path: Path, fmt: str) -> Path:
    src = tmp_path / "src"
    build_tree(src, extended=fmt in ("gnu", "posix"))
    out = tmp_path / f"{fmt}.tar"
    flags = ["--xattrs", "--xattrs-include=*"] if fmt == "posix" else []
    run([require("tar"), f"--format={fmt}", "--sort=name", *flags, "-cf", out, "-C", src, "."])
    return out


# ---------------------------------------------------------------- byte identity


@pytest.mark.parametrize("fmt", ["v7", "ustar", "gnu", "posix"])
def test_gnu_tar_archives_round_trip_byte_for_byte(tmp_path: Path, fmt: str) -> None:
    if fmt == "v7":  # v7 has no fifo/device types nor long names: a small tree
        src = tmp_path / "src"
        src.mkdir()
        (src / "a.txt").write_bytes(b"a" * 700)
        (src / "dir").mkdir()
        os.symlink("a.txt", src / "dir" / "l")
        path = tmp_path / "v7.tar"
        run([require("tar"), "--format=v7", "--sort=name", "-cf", path, "-C", src, "."])
    else:
        path = gnu_tar(tmp_path, fmt)
    data = path.read_bytes()
    assert pass_through(data) == data
    assert len(read_all(data)) == len(tarfile.open(path).getmembers())


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tarfile_archives_round_trip_byte_for_byte(fmt: int) -> None:
    members = synthetic_members() + (big_members() if fmt != tarfile.USTAR_FORMAT else [])
    if fmt == tarfile.GNU_FORMAT:  # GNU format drops PAX records and long owner names
        members = [(i, d) for i, d in members if not i.pax_headers and len(i.uname) <= 32]
    data = tar_of(*members, fmt=fmt)
    assert pass_through(data) == data
    assert b"".join(iter_tar_bytes(iter_entries(io.BytesIO(data)), record_size=10240)) == data


# ---------------------------------------------------------------- re-encoding


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "posix"])
def test_reencoded_gnu_tar_archive_reads_the_same(tmp_path: Path, fmt: str) -> None:
    original = gnu_tar(tmp_path, fmt)
    data = original.read_bytes()
    new = tmp_path / "new.tar"
    new.write_bytes(reencode(data))
    assert describe(new.read_bytes()) == describe(data)
    assert gnu_listing(new) == gnu_listing(original)
    for _, raw, _ in read_all(new.read_bytes()):
        assert raw is not None
    kinds = {info.type for info, _, _ in read_all(new.read_bytes())}
    assert kinds <= {b"0", b"1", b"2", b"3", b"5", b"6"}  # never GNU L/K


def test_reencoded_xattrs_extract_with_gnu_tar(tmp_path: Path) -> None:
    data = gnu_tar(tmp_path, "posix").read_bytes()
    new = tmp_path / "new.tar"
    new.write_bytes(reencode(data, mtime=0))
    dest = tmp_path / "out"
    dest.mkdir()
    tar = require("tar")
    run([tar, "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xf", new, "-C", dest])
    assert os.getxattr(dest / "caps", "security.capability") == CAPABILITY
    assert os.getxattr(dest / "caps", "user.note") == b"a=b\nc"
    assert os.stat(dest / "bigids").st_uid == 3_000_000
    assert os.stat(dest / "bigids").st_mtime == 0
    assert (dest / ("p" * 90) / ("q" * 90) / ("r" * 90)).read_bytes() == b"over 255"
    assert os.readlink(dest / "longlink") == "t" * 150
    assert os.stat(dest / "hard").st_ino == os.stat(dest / "hello.txt").st_ino
    assert stat.S_ISCHR(os.stat(dest / "null").st_mode)
    assert stat.S_ISFIFO(os.stat(dest / "fifo").st_mode)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_reencoded_tarfile_archive_reads_the_same(tmp_path: Path, fmt: int) -> None:
    members = synthetic_members() + (big_members() if fmt != tarfile.USTAR_FORMAT else [])
    data = tar_of(*members, fmt=fmt)
    new = reencode(data)
    assert describe(new) == describe(data)
    (tmp_path / "a.tar").write_bytes(data)
    (tmp_path / "b.tar").write_bytes(new)
    assert gnu_listing(tmp_path / "b.tar") == gnu_listing(tmp_path / "a.tar")


def test_rewritten_mtime_is_seen_by_tarfile_and_gnu_tar(tmp_path: Path) -> None:
    data = gnu_tar(tmp_path, "posix").read_bytes()
    new = reencode(data, mtime=0)
    for m in tarfile.open(fileobj=io.BytesIO(new)):
        assert m.mtime == 0 and "mtime" not in m.pax_headers
    (tmp_path / "b.tar").write_bytes(new)
    assert all(
        " 1970-01-01 00:00:00 " in line for line in gnu_listing(tmp_path / "b.tar").splitlines()
    )


def test_pax_mtime_text_is_kept_exactly_when_unchanged() -> None:
    info = member("f", pax_headers={"mtime": "1700000000.123456789"})
    data = tar_of((info, b"x"))
    new = reencode(data, name="g")
    assert b"mtime=1700000000.123456789\n" in new


# ---------------------------------------------------------------- mtime-only changes


def set_mtime(data: bytes, ts: int = 0, *, plain: bool = False) -> bytes:
    """``data`` with every mtime set to ``ts`` and the time records dropped, as
    normalize-timestamps does; ``plain`` re-encodes from a bare TarInfo (no source block)."""

    def change(entry: TarEntry) -> TarEntry:
        kept = {k: v for k, v in entry.info.pax_headers.items() if k not in TIME_RECORDS}
        new = rewrite_header(entry, mtime=ts, pax_headers=kept)
        if plain and isinstance(new.info, ParsedInfo):
            new.info.source = None
        return new

    return b"".join(iter_tar_bytes(change(e) for e in iter_entries(io.BytesIO(data))))


def headers_of(data: bytes) -> list[tuple[bytes, bool]]:
    """Each member's header blocks, and whether they are one block or a time-only PAX header
    and a block (what an mtime change patches)."""
    out = []
    for entry in iter_entries(io.BytesIO(data)):
        raw, records = entry.raw_header or b"", entry.info.pax_headers
        simple = len(raw) == 512 or raw[156:157] == b"x" and set(records) <= TIME_RECORDS
        out.append((raw, simple))
    return out


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "posix"])
def test_mtime_only_change_patches_the_source_block(tmp_path: Path, fmt: str) -> None:
    data = gnu_tar(tmp_path, fmt).read_bytes()
    new = set_mtime(data, 1234)
    assert describe(new) == describe(set_mtime(data, 1234, plain=True))
    patched = 0
    for (old, simple), (out, _) in zip(headers_of(data), headers_of(new), strict=True):
        block = old[-512:]
        if simple:
            # the member's own block, only its mtime and checksum changed; no time records
            assert out[:136] + out[156:] == block[:136] + block[156:]
            assert out[136:148] == b"%011o\0" % 1234 and out[148:156] == b"%06o\0 " % checksum(out)
            patched += 1
    assert patched > 10
    (tmp_path / "b.tar").write_bytes(new)
    listing = gnu_listing(tmp_path / "b.tar")
    assert listing.count(" 1970-01-01 00:20:34 ") == len(listing.splitlines())


def test_time_records_do_not_change_a_normalized_header() -> None:
    with_times = member("f", pax_headers={"mtime": "17.5", "atime": "9", "ctime": "1.25"})
    without = member("f")
    one, two = set_mtime(tar_of((with_times, b"x"))), set_mtime(tar_of((without, b"x")))
    assert one == two and len(headers_of(one)[0][0]) == 512


def test_any_other_change_re_encodes() -> None:
    data = tar_of((member("f", uname="u", devmajor=0), b"x"), fmt=tarfile.GNU_FORMAT)
    entry = rewrite_header(next(iter_entries(io.BytesIO(data))), mtime=0)
    patched = encode_header(entry.info)
    assert patched[257:265] == b"ustar  \0"  # the GNU source block, patched
    entry.info.uname = "other"  # changed in place after the mtime: no longer the source's
    out = encode_header(entry.info)
    assert out[257:265] == b"ustar\x0000" and out[265:270] == b"other"
    for info, _, _ in read_all(b"".join(iter_tar_bytes([entry]))):
        assert (info.uname, info.mtime) == ("other", 0)


def test_signed_checksum_and_global_headers_re_encode() -> None:
    block = bytearray(header("caf\xe9", fmt=tarfile.GNU_FORMAT))
    block[0:5] = b"caf\xe9\0"
    raw = bytes(block[:148]) + b"        " + bytes(block[156:])
    block[148:156] = b"%06o\0 " % sum(b - 256 if b > 127 else b for b in raw)
    data = bytes(block) + bytes(1024)
    new = set_mtime(data)
    assert new == set_mtime(data, plain=True) and new[257:265] == b"ustar\x0000"
    info = member("g", pax_headers={"uid": "7"})
    glob = tar_of((member("f"), b"x"), fmt=tarfile.PAX_FORMAT)
    glob = pax_block({"uid": "7"}, tarfile.XGLTYPE) + glob
    assert set_mtime(glob) == set_mtime(glob, plain=True)
    del info


# ---------------------------------------------------------------- format choice


def records_of(block: bytes) -> dict[str, str]:
    """PAX records of an encoded header (empty for a single USTAR block)."""
    if len(block) == 512:
        return {}
    info = tarfile.TarInfo.frombuf(block[:512], "utf-8", "surrogateescape")
    assert info.type == tarfile.XHDTYPE
    data = block[512 : 512 + info.size]
    out = {}
    while data:
        length = int(data.split(b" ", 1)[0])
        key, _, value = data[:length].partition(b" ")[2][:-1].partition(b"=")
        out[key.decode()] = value.decode("utf-8", "surrogateescape")
        data = data[length:]
    return out


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {}),
        ({"name": "d" * 100}, {}),
        ({"name": "a" * 155 + "/" + "b" * 100}, {}),  # prefix 155 + name 100
        ({"name": "a" * 156 + "/" + "b"}, {"path": "a" * 156 + "/b"}),
        ({"name": "a/" + "b" * 101}, {"path": "a/" + "b" * 101}),
        ({"name": "a/" + "b" * 120 + "/" + "c" * 50}, {}),  # the last fitting slash splits
        ({"name": "d" * 99, "type": tarfile.DIRTYPE}, {}),
        ({"name": "d" * 100, "type": tarfile.DIRTYPE}, {}),  # "d.../" does not fit: no slash
        ({"name": "d" * 101, "type": tarfile.DIRTYPE}, {"path": "d" * 101 + "/"}),
        ({"name": "é"}, {"path": "é"}),
        ({"linkname": "l" * 100, "type": tarfile.SYMTYPE}, {}),
        ({"linkname": "l" * 101, "type": tarfile.SYMTYPE}, {"linkpath": "l" * 101}),
        ({"uid": 0o7777777, "gid": 0o7777777}, {}),
        ({"uid": 3_000_000}, {"uid": "3000000"}),
        ({"gid": 2**40}, {"gid": str(2**40)}),
        ({"size": 8 * 2**30 - 1}, {}),
        ({"size": 8 * 2**30}, {"size": str(8 * 2**30)}),
        ({"mtime": 0o77777777777}, {}),
        ({"mtime": 2.0}, {}),
        ({"mtime": 0o77777777777 + 1}, {"mtime": str(0o77777777777 + 1)}),
        ({"mtime": -1}, {"mtime": "-1"}),
        ({"mtime": 1.5}, {"mtime": "1.5"}),
        ({"uname": "u" * 32, "gname": "g" * 32}, {}),
        ({"uname": "u" * 33}, {"uname": "u" * 33}),
        ({"gname": "ü"}, {"gname": "ü"}),
        ({"pax_headers": {"path": "file", "mtime": "5", "uid": "1"}}, {}),
        ({"pax_headers": {"hdrcharset": "BINARY", "GNU.sparse.major": "1"}}, {}),
        ({"pax_headers": {"atime": "1.5", "SCHILY.acl.access": "user::rw-"}}, None),
        ({"pax_headers": {"SCHILY.xattr.user.a": "\udcff"}}, None),
        ({"name": "\udcff"}, {"hdrcharset": "BINARY", "path": "\udcff"}),
    ],
)
def test_ustar_is_chosen_unless_pax_is_needed(fields: dict[str, Any], expected: Any) -> None:
    info = member("file")
    for key, value in fields.items():
        setattr(info, key, value)
    if expected is None:
        expected = dict(info.pax_headers)
    block = encode_header(info)
    assert records_of(block) == expected
    info.size = 0  # read it back (without the data of the huge sizes)
    ((got, raw, _),) = read_all(encode_header(info) + bytes(1024))
    for key in ("linkname", "uid", "gid", "uname", "gname", "mtime", "type"):
        assert getattr(got, key) == getattr(info, key), key
    assert got.name.rstrip("/") == info.name
    assert tarfile.open(fileobj=io.BytesIO(encode_header(info) + bytes(1024))).getnames() == [
        info.name
    ]


def test_long_names_from_gnu_format_become_ustar_when_they_fit() -> None:
    names = [f"dir{i:03d}/" + "n" * 100 for i in range(50)]  # 107 chars: GNU needs 'L'
    data = tar_of(*[(member(n), b"z") for n in names], fmt=tarfile.GNU_FORMAT)
    new = reencode(data)
    assert len(new) == 50 * 1024 + 1024  # header + one data block each, no extended headers
    assert [m.name for m in tarfile.open(fileobj=io.BytesIO(new))] == names
    pax = tar_of(*[(member("p" * 300), b"z")])
    assert len(reencode(pax)) == 3 * 512 + 512 + 1024  # x header + records, header, data


def test_global_headers_pass_through_and_are_overridden_when_needed() -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"uid": "77", "comment": "c"}
    ) as tf:
        tf.addfile(member("a", uid=0), io.BytesIO(b""))
    data = buf.getvalue()
    entries = read_all(data)
    assert entries[0][0].type == tarfile.XGLTYPE
    assert entries[0][0].pax_headers == {"uid": "77", "comment": "c"}
    assert entries[1][0].uid == 77 == tarfile.open(fileobj=io.BytesIO(data)).getmembers()[0].uid
    assert pass_through(data) == data
    for changes, uid in (({}, 77), ({"uid": 5}, 5), ({"uid": 0}, 0)):
        new = reencode(data, **changes)
        assert tarfile.open(fileobj=io.BytesIO(new)).getmembers()[0].uid == uid
        assert [e[0].uid for e in read_all(new)][1] == uid


def test_global_header_setting_path_is_refused() -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"path": "x"}
    ) as tf:
        tf.addfile(member("a"), io.BytesIO(b""))
    with pytest.raises(MalformedInput, match="global header sets path"):
        read_all(buf.getvalue())


# ---------------------------------------------------------------- reader details


def test_reader_exposes_offsets_and_drains_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    data = tar_of((member("a"), b"x" * 600), (member("b"), b"y"))
    stream = io.BytesIO(data + b"junk" * 100)
    reader = iter_entries(stream, what="layer sha256:abc")
    offsets = [(reader.entry_offset, e.info.offset, e.info.offset_data) for e in reader]
    assert offsets == [(0, 0, 512), (1536, 1536, 2048)]
    assert reader.end_offset == 2560
    assert reader.total_size == len(data) + 400 == stream.tell()
    assert "non-zero data after the end" in caplog.text


def test_lone_zero_block_and_missing_end_marker_are_tolerated() -> None:
    data = tar_of((member("a"), b"x"))
    one = data[:1024] + bytes(512)
    none = data[:1024]
    for variant in (one, none):
        assert [(i.name, body) for i, _, body in read_all(variant)] == [("a", b"x")]
    reader = iter_entries(io.BytesIO(b""))
    assert list(reader) == [] and reader.total_size == 0 and reader.end_offset is None


def test_bodies_are_bounded_and_skipped_when_unread() -> None:
    data = tar_of((member("a"), b"0123456789" * 300), (member("b"), b"second"))
    reader = iter_entries(io.BytesIO(data))
    first = next(reader)
    assert first.body.read(4) == b"0123"
    buf = bytearray(6)
    assert first.body.readinto(buf) == 6 and bytes(buf) == b"456789"
    assert first.body.remaining == 2990
    second = next(reader)
    assert first.body.read() == b""  # abandoned once the reader moved on
    assert second.body.read(100) == b"second"
    assert second.body.read(100) == b""
    with pytest.raises(StopIteration):
        next(reader)


def test_v7_directory_and_signed_checksum() -> None:
    block = bytearray(header("olddir/", kind=tarfile.AREGTYPE, fmt=tarfile.GNU_FORMAT))
    block[257:265] = bytes(8)  # V7: no magic
    block[0:100] = b"\xe9name/".ljust(100, b"\0")
    raw = bytes(block[:148]) + b"        " + bytes(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in raw)
    block[148:156] = b"%06o\0 " % signed
    ((info, _, _),) = read_all(bytes(block) + bytes(1024))
    assert info.type == tarfile.DIRTYPE and info.name == "\udce9name/"


def test_gnu_base256_numbers() -> None:
    info = member("f", uid=2**40, gid=5, mtime=-(2**40))
    data = tar_of((info, b"x"), fmt=tarfile.GNU_FORMAT)
    ((got, _, _),) = read_all(data)
    assert (got.uid, got.mtime) == (2**40, -(2**40))
    new = reencode(data)
    assert tarfile.open(fileobj=io.BytesIO(new)).getmembers()[0].mtime == -(2**40)


def test_header_only_types_never_carry_data() -> None:
    block = with_checksum(header("h", kind=tarfile.LNKTYPE, linkname="a", size=5))
    data = block + tar_of((member("next"), b"n"))
    entries = read_all(data)
    assert [(i.name, i.size, raw is None, body) for i, raw, body in entries] == [
        ("h", 0, True, b""),
        ("next", 1, False, b"n"),
    ]
    assert b"".join(iter_tar_bytes(iter_entries(io.BytesIO(data))))[124:136] == b"00000000000\0"


@pytest.mark.parametrize("version", ["gnu", "0.0", "0.1", "1.0"])
def test_sparse_members_become_regular_files(tmp_path: Path, version: str) -> None:
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(3 << 20)
        f.seek(1 << 20)
        f.write(b"hello")
        f.seek((2 << 20) + 7)
        f.write(b"world" * 1000)
    path = tmp_path / "s.tar"
    flags = (
        ["--format=gnu"] if version == "gnu" else ["--format=posix", f"--sparse-version={version}"]
    )
    run([require("tar"), "--sparse", *flags, "-cf", path, "-C", tmp_path, "sparse"])
    entries = read_all(path.read_bytes())
    ((info, raw, body),) = entries
    assert (info.name, info.type, info.size, raw) == ("sparse", tarfile.REGTYPE, 3 << 20, None)
    assert body == sparse.read_bytes()
    assert not any(k.startswith("GNU.sparse") for k in info.pax_headers)
    new = b"".join(iter_tar_bytes(iter_entries(io.BytesIO(path.read_bytes()))))
    with tarfile.open(fileobj=io.BytesIO(new)) as tf:
        m = tf.getmembers()[0]
        assert m.type == tarfile.REGTYPE and not m.sparse
        assert tf.extractfile(m).read() == sparse.read_bytes()  # type: ignore[union-attr]


def test_corrupt_sparse_map_is_refused(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(1 << 20)
        f.write(b"data")
    path = tmp_path / "s.tar"
    run([require("tar"), "--sparse", "--format=gnu", "-cf", path, "-C", tmp_path, "sparse"])
    data = path.read_bytes()
    assert data[156:157] == tarfile.GNUTYPE_SPARSE
    bad = with_checksum(data[:483] + b"00000000001\0" + data[495:512]) + data[512:]
    with pytest.raises(MalformedInput, match="bad sparse map in tar member at offset 0"):
        read_all(bad)


def test_sparse_expansion_is_capped(tmp_path: Path) -> None:
    """Default cap: 64 x stored data + 1 GiB; an explicit ``max_sparse_size`` replaces it."""
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate((1 << 30) + (1 << 20))  # 1 GiB + 1 MiB, a block or so of data
        f.write(b"data")
    path = tmp_path / "s.tar"
    run([require("tar"), "--sparse", "--format=posix", "-cf", path, "-C", tmp_path, "sparse"])
    data = path.read_bytes()
    assert len(data) < 1 << 20
    with pytest.raises(
        LimitExceeded, match=r"sparse tar member expands to 1074790400 bytes from \d+ stored"
    ):
        next(iter_entries(io.BytesIO(data)))
    (entry,) = list(iter_entries(io.BytesIO(data), max_sparse_size=2 << 30))
    assert entry.info.size == (1 << 30) + (1 << 20)
    small = tmp_path / "small.tar"
    sparse.unlink()
    with open(sparse, "wb") as f:
        f.truncate(3 << 20)
        f.write(b"data")
    run([require("tar"), "--sparse", "--format=gnu", "-cf", small, "-C", tmp_path, "sparse"])
    assert len(list(iter_entries(io.BytesIO(small.read_bytes())))) == 1
    with pytest.raises(LimitExceeded, match=r"\(limit 1048576\) at offset 0 in layer"):
        next(iter_entries(io.BytesIO(small.read_bytes()), max_sparse_size=1 << 20))


class _Trickle:
    """A stream that returns at most ``step`` bytes per read, like a pipe or a socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._stream = io.BytesIO(data)
        self._step = step

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(min(n, self._step) if n >= 0 else self._step)


@pytest.mark.parametrize("step", [1, 7, 511, 513, 70_000])
def test_short_reads_from_the_stream_are_fine(step: int) -> None:
    data = tar_of(*synthetic_members(), *big_members(), (member("big"), os.urandom(3 << 20)))
    want = [(i.name, raw, body) for i, raw, body in read_all(data)]
    reader = iter_entries(_Trickle(data, step))
    got = [(e.info.name, e.raw_header, e.body.read()) for e in reader]
    assert got == want and reader.total_size == len(data)


# ---------------------------------------------------------------- malformed input


def _good() -> bytes:
    return tar_of((member("a"), b"x" * 1000), (member("b" * 200), b"y"))


def _pax_member(records: bytes, name: str = "f") -> bytes:
    xhdr = with_checksum(header("././@PaxHeader", size=len(records), kind=tarfile.XHDTYPE))
    pad = bytes(-len(records) % 512)
    return xhdr + records + pad + header(name) + bytes(1024)


def _gnu_long(name: bytes) -> bytes:
    long = with_checksum(header("././@LongLink", size=len(name), kind=tarfile.GNUTYPE_LONGNAME))
    return long + name + bytes(-len(name) % 512) + header("f") + bytes(1024)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01" + _good()[1:], "corrupt tar header at offset 0 in layer$"),
        (_good()[:1536] + b"Z" + _good()[1537:], "corrupt tar header at offset 1536 in layer"),
        (os.urandom(4096), "corrupt tar header at offset 0"),
        (b"hello world" * 100, "corrupt tar header at offset 0"),
        (_good()[:700], "truncated tar in layer: member 'a' at offset 0 ends early"),
        (_good()[:300], "corrupt tar header at offset 0 in layer: partial block"),
        (_good()[: 1536 + 600], "truncated tar in layer"),
        (_good()[: 1536 + 512 + 10], "truncated tar in layer"),
        (with_checksum(header(size=0o77777777777)) + bytes(1024), "truncated"),
        (with_checksum(header()[:124] + b"\x80" + b"\xff" * 11 + header()[136:]), "oversized"),
        (
            with_checksum(header()[:124] + b"\x80" + bytes(4) + b"\xff" * 7 + header()[136:]),
            "truncated",
        ),
        (with_checksum(header()[:124] + b"\xff" * 12 + header()[136:]), "negative"),
        (with_checksum(header()[:124] + b"12x4567\0\0\0\0\0" + header()[136:]), "bad number"),
        (_pax_member(b"10 size=x\n"), "bad PAX header at offset 0 in layer: bad PAX number"),
        (_pax_member(b"11 size=-5\n"), "bad PAX number"),
        (_pax_member(b"13 mtime=1e5\n"), "bad PAX time"),
        (_pax_member(b"10 path=x"), "bad PAX record"),
        (_pax_member(b"99 path=x\n"), "bad PAX record"),
        (_pax_member(b"abc path=x\n"), "bad PAX record"),
        (_pax_member(b"7 =abc\n"), "bad PAX record"),
        (_pax_member(b"12 path=a\0b\n"), "name with NUL"),
        (_pax_member(b"8 path=\n", name=""), "empty name"),
        (_gnu_long(b"a\0b\0"), "name with NUL"),
        (_pax_member(b"9 path=x\n")[:1024] + bytes(1024), "extended header without a member"),
        (_pax_member(b"9 path=x\n")[:1024], "truncated"),
    ],
)
def test_malformed_input_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(MalformedInput, match=message) as excinfo:
        read_all(data)
    assert "\n" not in str(excinfo.value)


def test_huge_extended_header_is_a_limit() -> None:
    block = with_checksum(header("x", size=2 << 20, kind=tarfile.XHDTYPE))
    with pytest.raises(LimitExceeded):
        read_all(block + bytes(2 << 20))


def test_writer_refuses_bad_bodies_and_headers() -> None:
    info = member("f")
    info.size = 10
    entry = TarEntry(info, None, new_entry(member("g"), b"short").body)
    with pytest.raises(ValueError, match="has only 5 of its 10 bytes left"):
        b"".join(iter_tar_bytes([entry]))
    info = member("f")
    info.size = 10
    with pytest.raises(MalformedInput, match="ended 5 bytes early"):
        b"".join(iter_tar_bytes([new_entry(info, io.BytesIO(b"short"))]))
    with pytest.raises(ValueError, match="whole 512-byte blocks"):
        TarWriter(io.BytesIO()).write_entry(
            TarEntry(member("f"), b"abc", new_entry(member("f")).body)
        )
    writer = TarWriter(io.BytesIO())
    with pytest.raises(ValueError):
        writer.write_raw(b"x")
    data = tar_of((member("a"), b"abc"))
    first = next(iter(iter_entries(io.BytesIO(data))))
    first.body.read(1)
    with pytest.raises(ValueError, match="has only 2 of its 3 bytes left"):
        writer.write_entry(first)
    with pytest.raises(ValueError):
        rewrite_header(first, size=3)


def test_writer_close_and_record_size() -> None:
    out = io.BytesIO()
    writer = TarWriter(out)
    writer.write_entry(new_entry(member("a"), b"abc"))
    writer.write_raw(bytes(512))
    assert writer.close() == 512 + 512 + 512 + 1024 == len(out.getvalue())
    assert writer.close() == 2560
    out = io.BytesIO()
    writer = TarWriter(out, record_size=10240)
    writer.write_entry(new_entry(member("a"), io.BytesIO(b"abcdef")))
    assert writer.close() == 10240
    with pytest.raises(ValueError):
        writer.write_entry(new_entry(member("b"), b""))
    info = member("b")
    info.size = 3
    ((got, _, body),) = read_all(b"".join(iter_tar_bytes([new_entry(info, io.BytesIO(b"abcdef"))])))
    assert body == b"abc"


# ---------------------------------------------------------------- property test

_NAME_CHARS = st.sampled_from("abcxyz019._- éü日\udcff")
_components = st.text(_NAME_CHARS, min_size=1, max_size=40).filter(lambda c: c not in (".", ".."))
_names = st.lists(_components, min_size=1, max_size=9).map("/".join)
_xattr_keys = st.text(st.sampled_from("abc.xyz_"), min_size=1, max_size=20)
_xattr_values = st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape"))


@st.composite
def _entries(draw: st.DrawFn) -> tuple[tarfile.TarInfo, bytes]:
    kind = draw(st.sampled_from([b"0", b"0", b"1", b"2", b"3", b"4", b"5", b"6"]))
    info = tarfile.TarInfo(draw(_names))
    info.type = kind
    info.mode = draw(st.integers(0, 0o7777))
    info.uid, info.gid = draw(st.integers(0, 2**32)), draw(st.integers(0, 2**32))
    info.uname = draw(st.text(_NAME_CHARS, max_size=40))
    info.gname = draw(st.text(_NAME_CHARS, max_size=40))
    info.mtime = draw(
        st.one_of(
            st.integers(-(2**40), 2**40),
            st.integers(0, 2**33).map(lambda t: t + 0.25),
            st.integers(0, 10**9).map(lambda t: t / 1000),
        )
    )
    if kind in (b"1", b"2"):
        info.linkname = draw(_names)
    if kind in (b"3", b"4"):
        info.devmajor, info.devminor = draw(st.integers(0, 4095)), draw(st.integers(0, 2**20))
    xattrs = draw(st.dictionaries(_xattr_keys, _xattr_values, max_size=3))
    info.pax_headers = {f"SCHILY.xattr.user.{k}": v for k, v in xattrs.items()}
    data = draw(st.binary(max_size=3000)) if kind == b"0" else b""
    info.size = len(data)
    return info, data


def _meta(info: tarfile.TarInfo) -> tuple[Any, ...]:
    name = info.name.rstrip("/") if info.type == tarfile.DIRTYPE else info.name
    xattrs = {k: v for k, v in info.pax_headers.items() if k.startswith("SCHILY.xattr.")}
    return (name, info.type, info.mode, info.uid, info.gid, info.uname, info.gname) + (
        info.mtime,
        info.size,
        info.linkname,
        info.devmajor,
        info.devminor,
        xattrs,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_entries(), max_size=12), st.booleans())
def test_random_entries_survive_write_then_read(
    members: list[tuple[tarfile.TarInfo, bytes]], through_writer: bool
) -> None:
    entries = [new_entry(info, data) for info, data in members]
    if through_writer:
        out = io.BytesIO()
        writer = TarWriter(out)
        for entry in entries:
            writer.write_entry(entry)
        writer.close()
        data = out.getvalue()
    else:
        data = b"".join(iter_tar_bytes(entries))
    got = read_all(data)
    assert [(_meta(i), body) for i, _, body in got] == [(_meta(i), d) for i, d in members]
    assert pass_through(data, 512) == data
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8") as tf:
        theirs = [(_meta(m), tf.extractfile(m).read() if m.isreg() else b"") for m in tf]  # type: ignore[union-attr]
    assert theirs == [(_meta(i), d) for i, d in members]


@given(st.binary(min_size=512, max_size=512))
def test_fast_checksum_equals_the_byte_sum(block: bytes) -> None:
    assert checksum(block) == sum(block[:148]) + sum(block[156:]) + 256


# ---------------------------------------------------------------- memory


class _ZeroTar:
    """A tar stream with one member of ``size`` zero bytes, generated on the fly."""

    def __init__(self, size: int) -> None:
        self._head = header("big", size=size)
        self._zeros = size + (-size % 512) + 1024

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            return data
        take = min(n if n >= 0 else 1 << 20, self._zeros, 1 << 20)
        self._zeros -= take
        return bytes(take)


def _hash_all(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def test_a_500_mb_member_is_streamed_in_bounded_memory() -> None:
    size = 500 * 10**6
    tracemalloc.start()
    try:
        reader = iter_entries(_ZeroTar(size))
        entry = next(reader)
        body_digest = _hash_all(iter(lambda: entry.body.read(1 << 20), b""))
        assert list(reader) == []
        skipped = iter_entries(_ZeroTar(size))
        assert [e.info.size for e in skipped] == [size]  # body skipped unread
        archive_digest = _hash_all(iter_tar_bytes(iter_entries(_ZeroTar(size))))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader.total_size == skipped.total_size == 512 + size + (-size % 512) + 1024
    zeros = bytes(10**6)
    assert body_digest == _hash_all(zeros for _ in range(size // 10**6))
    expected = [header("big", size=size), *(zeros for _ in range(size // 10**6))]
    assert archive_digest == _hash_all([*expected, bytes(-size % 512 + 1024)])
    assert peak < 8 << 20, f"peak traced memory {peak} bytes"


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("name", "normal", "escaping"),
    [
        ("./a//b/./c/", "a/b/c", False),
        ("/etc/passwd", "etc/passwd", False),
        ("./", "", False),
        ("a/../b", "b", False),
        ("a/../../b", "../b", True),
        ("../x", "../x", True),
        ("a/b/../../..", "..", True),
        ("..foo/bar", "..foo/bar", False),
    ],
)
def test_normalize_and_escape(name: str, normal: str, escaping: bool) -> None:
    assert paths.normalize(name) == normal
    assert paths.is_escaping(name) is escaping


def test_whiteouts() -> None:
    assert paths.whiteout_target("./a/b/.wh.c") == "a/b/c"
    assert paths.whiteout_target(".wh.top") == "top"
    assert paths.whiteout_target("a/.wh..wh..opq") is None
    assert paths.whiteout_target("a/.wh..wh.plnk") is None
    assert paths.whiteout_target("a/normal") is None
    assert paths.is_opaque("./a/.wh..wh..opq") and not paths.is_opaque("a/.wh.x")
    assert paths.is_whiteout("a/.wh..wh.plnk") and not paths.is_whiteout("a/b.wh.c")
    with pytest.raises(MalformedInput):
        paths.whiteout_target("a/.wh.")


@pytest.mark.parametrize(
    ("pattern", "path", "matches", "under"),
    [
        ("*.pyc", "a/b/c.pyc", True, True),
        ("*.pyc", "c.pyc", True, True),
        ("*.pyc", "a.pyc/x", False, True),
        ("usr/*/doc", "usr/share/doc", True, True),
        ("usr/*/doc", "usr/share/doc/x/y", False, True),
        ("usr/*/doc", "x/usr/share/doc", False, False),
        ("usr/*/doc", "usr/a/b/doc", False, False),
        ("/usr/share/", "./usr/share", True, True),
        ("/.git", ".git", True, True),
        ("/.git", "app/.git", False, False),
        ("/.git", ".git/config", False, True),
        ("/*.txt", "a.txt", True, True),
        ("/*.txt", "d/a.txt", False, False),
        (".git", "app/.git", True, True),
        ("**/x", "x", True, True),
        ("**/x", "a/b/x", True, True),
        ("a/**/x", "a/x", True, True),
        ("a/**/x", "a/b/c/x", True, True),
        ("a/**", "a", False, False),
        ("a/**", "a/b/c", True, True),
        ("**", "anything/at/all", True, True),
        ("node_modules", "app/node_modules/pkg/index.js", False, True),
        ("?.txt", "a.txt", True, True),
        ("?.txt", "ab.txt", False, False),
        ("[ab]*", "b/c", False, True),
        ("[!a]", "b", True, True),
        ("[!a]", "a", False, False),
        ("x[/]y", "x/y", False, False),
        ("*", ".hidden", True, True),
        ("*", "./", False, False),
        ("a[", "a[", True, True),
        ("\\*", "*", True, True),
        ("\\*", "a", False, False),
        ("etc/pass*", "etc/passwd", True, True),
        ("etc/pass*", "etc/x/passwd", False, False),
    ],
)
def test_glob_semantics(pattern: str, path: str, matches: bool, under: bool) -> None:
    assert paths.match(pattern, path) is matches
    assert paths.matches_or_under(pattern, path) is under


def test_glob_test_is_match_on_normalized_paths() -> None:
    for pattern in ("/.git", ".git", "usr/*/doc", "**/x", "*.pyc"):
        for subtree in (False, True):
            test = paths.glob_test(pattern, subtree=subtree)
            judge = paths.matches_or_under if subtree else paths.match
            for path in (
                ".git",
                "a/.git",
                ".git/x",
                "usr/s/doc",
                "usr/s/doc/y",
                "q/x",
                "c.pyc",
                "",
            ):
                assert test(path) is judge(pattern, path), (pattern, subtree, path)
    with pytest.raises(InvalidOption):
        paths.glob_test("[z-a]")


def test_bad_glob_patterns() -> None:
    for pattern in ("", "/", "[z-a]"):
        with pytest.raises(InvalidOption):
            paths.match(pattern, "x")


def test_log_is_quiet_for_clean_archives(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="occystrap.tario")
    read_all(_good())
    assert not caplog.records


def test_checked_tar_passes_bytes_and_refuses_what_is_not_a_tar() -> None:
    from occystrap.tario.check import checked_tar

    good = tar_of(*synthetic_members(), (member("big"), os.urandom(3 << 20)))
    out = bytearray()
    with checked_tar(io.BytesIO(good), "layer 7") as stream:
        while chunk := stream.read(1 << 16):
            out += chunk
    assert bytes(out) == good
    for bad, error in (
        (os.urandom(8192), "corrupt tar header at offset 0 in layer 7"),
        (good[: len(good) // 2], "truncated tar in layer 7"),
    ):
        with pytest.raises(MalformedInput, match=error):
            with checked_tar(io.BytesIO(bad), "layer 7") as stream:
                while stream.read(1 << 16):
                    pass


def _full_parse_outcome(data: bytes) -> str:
    """What iterating every entry and reading every body says about ``data``."""
    try:
        for entry in iter_entries(io.BytesIO(data), what="layer 3"):
            entry.body.read()
    except (MalformedInput, LimitExceeded) as e:
        return f"{type(e).__name__}: {e}"
    return "ok"


def _walk_outcome(data: bytes, read_size: int = 1 << 20) -> str:
    """What checked_tar says about ``data``; the bytes must come out unchanged."""
    from occystrap.tario.check import checked_tar

    out = bytearray()
    try:
        with checked_tar(io.BytesIO(data), "layer 3") as stream:
            while chunk := stream.read(read_size):
                out += chunk
    except (MalformedInput, LimitExceeded) as e:
        assert data.startswith(bytes(out))
        return f"{type(e).__name__}: {e}"
    assert bytes(out) == data
    return "ok"


def _walk_corpus() -> list[bytes]:
    members = synthetic_members() + big_members()
    return [
        tar_of(*members, fmt=tarfile.PAX_FORMAT),
        tar_of(*members, fmt=tarfile.GNU_FORMAT),
        tar_of(*synthetic_members(), fmt=tarfile.USTAR_FORMAT),
        tar_of(*synthetic_members(), (member("big"), os.urandom(3 << 20 | 77))),
        _small_files_tar(tarfile.GNU_FORMAT),
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_checked_tar_refuses_exactly_what_the_reader_refuses(data: st.DataObject) -> None:
    """The walker (headers only, bodies skipped) and a full parse agree on damaged tars."""
    tar = data.draw(st.sampled_from(_walk_corpus()))
    how = data.draw(st.sampled_from(["flip", "cut", "none"]))
    if how == "flip":
        at = data.draw(st.integers(0, min(len(tar), 40_000) - 1))
        value = data.draw(st.integers(0, 255))
        tar = tar[:at] + bytes([value]) + tar[at + 1 :]
    elif how == "cut":
        tar = tar[: data.draw(st.integers(0, len(tar)))]
    read_size = data.draw(st.sampled_from([1 << 20, 512, 7777]))
    assert _walk_outcome(tar, read_size) == _full_parse_outcome(tar)


def test_checked_tar_reads_an_old_style_directory_as_the_reader_does() -> None:
    """Type NUL with a trailing slash is a directory, so its size field carries no data."""
    tar = (
        header("d/", size=1024, kind=tarfile.AREGTYPE)
        + header("f", size=1000)
        + b"x" * 1024
        + bytes(1024)
    )
    assert [e.info.type for e in iter_entries(io.BytesIO(tar))] == [tarfile.DIRTYPE, b"0"]
    assert _walk_outcome(tar) == "ok" == _full_parse_outcome(tar)


def _small_files_tar(fmt: int) -> bytes:
    return tar_of(*((member(f"d/f{i}"), b"%d" % i * (i % 700)) for i in range(80)), fmt=fmt)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_headers_of_common_writers_are_simple(fmt: int, tmp_path: Path) -> None:
    """The walk's fast path takes the headers tarfile and GNU tar write, and spans each
    member exactly as the full parse does."""
    from occystrap.tario.fields import simple_span

    (tmp_path / "src").mkdir()
    for i in range(5):
        (tmp_path / "src" / f"f{i}").write_bytes(b"y" * (i * 300))
    gnu = tmp_path / "g.tar"
    run([require("tar"), "--format=gnu", "-cf", gnu, "-C", tmp_path / "src", "."])
    for tar in (_small_files_tar(fmt), gnu.read_bytes()):
        reader = iter_entries(io.BytesIO(tar))
        offsets = [entry.info.offset for entry in reader] + [reader.end_offset]
        spans = [simple_span(tar[a : a + 512]) for a in offsets[:-1]]
        assert spans == [b - a for a, b in zip(offsets, offsets[1:], strict=False)]


def test_simple_span_refuses_what_needs_the_full_parse() -> None:
    from occystrap.tario.fields import simple_span

    good = header("f", size=700)
    assert simple_span(good) == 512 + 1024
    assert simple_span(header("d", kind=tarfile.DIRTYPE, size=0)) == 512
    spaced = with_checksum(good[:100] + b" 000644 " + good[108:])  # legal, not canonical
    base256 = header("f", uid=1 << 40, fmt=tarfile.GNU_FORMAT)
    bad_sum = good[:148] + b"000001\0 " + good[156:]
    extended = header("x" * 200, fmt=tarfile.PAX_FORMAT)
    for block in (spaced, base256, bad_sum, extended, with_checksum(b"\0" + good[1:])):
        assert simple_span(block[:512]) == 0


def test_checked_tar_walks_sparse_and_global_members(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.seek(5 << 20)
        f.write(b"end")
    for flags in (["--format=gnu"], ["--format=posix", "--sparse-version=1.0"]):
        path = tmp_path / "s.tar"
        run([require("tar"), "--sparse", *flags, "-cf", path, "-C", tmp_path, "sparse"])
        tar = path.read_bytes()
        assert _walk_outcome(tar) == "ok" == _full_parse_outcome(tar)
        cut = tar[: tar.rindex(b"end") + 1]
        assert _walk_outcome(cut) == _full_parse_outcome(cut) != "ok"
    buf = io.BytesIO()
    records = {"uid": "7", "comment": "x"}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers=records) as tf:
        tf.addfile(member("f"), io.BytesIO(b""))
    tar = buf.getvalue()
    assert tar[156:157] == b"g"
    assert _walk_outcome(tar) == "ok" == _full_parse_outcome(tar)
    bad = tar.replace(b"uid=7", b"uid=x")
    assert _walk_outcome(bad) == _full_parse_outcome(bad) != "ok"


def test_checked_tar_stays_a_few_chunks_ahead() -> None:
    """A big body is skipped a chunk at a time: memory does not grow with the member."""
    from occystrap.tario.check import CheckedTar

    tar = tar_of((member("big"), bytes(40 << 20)), (member("small"), b"x"))
    checked = CheckedTar(io.BytesIO(tar), "layer 1")
    tracemalloc.start()
    try:
        total = 0
        while chunk := checked.read(1 << 20):
            total += len(chunk)
            del chunk
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == len(tar) and checked.checked
    assert peak < 8 << 20


def test_checked_tar_left_unread_is_an_error() -> None:
    from occystrap.tario.check import checked_tar

    tar = tar_of(*synthetic_members())
    with pytest.raises(MalformedInput, match="not read to its end"):
        with checked_tar(io.BytesIO(tar), "layer 2") as stream:
            stream.read(1024)
    with checked_tar(io.BytesIO(tar), "layer 2") as stream:  # every byte, no final b""
        assert stream.read(len(tar)) == tar


def test_source_skip_reads_whole_chunks_and_keeps_the_rest() -> None:
    from occystrap.tario.source import CHUNK, Source

    sizes: list[int] = []

    class Spy(io.BytesIO):
        def read(self, n: int | None = -1, /) -> bytes:
            data = super().read(n)
            sizes.append(len(data))
            return data

    data = bytes(range(256)) * (3 * CHUNK // 256)
    src = Source(Spy(data))
    assert src.read(10) == data[:10]
    assert src.skip(CHUNK + 5) == CHUNK + 5
    assert src.tell() == CHUNK + 15
    assert src.read(7) == data[CHUNK + 15 : CHUNK + 22]
    assert src.skip(10 * CHUNK) == len(data) - CHUNK - 22
    assert all(n == CHUNK for n in sizes[:-1])
