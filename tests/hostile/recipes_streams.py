"""Recipes: broken byte streams (layer compression, whole archives, tar headers) and bombs."""

from __future__ import annotations

import hashlib
import random
import tarfile
from pathlib import Path

from lab.ocilayout import LAYER_TYPES
from lab.tarspec import file

from .cases import DECOMPRESSING, case
from .craft import (
    BASE,
    Blob,
    docker_save,
    end,
    gz,
    header,
    member,
    pax_member,
    pax_records,
    plain_layer,
    sha256,
    tar_of,
    write_layout,
    zst,
)

PLAIN = tar_of(BASE)
GZ = gz(PLAIN)
ZST = zst(PLAIN)
NOISE = random.Random(7).randbytes(4096)
OK_MEMBER = member("safe/ok.txt", b"benign\n")
TAR = "tar://{case}/image.tar"


def _layer(root: Path, data: bytes, media: str, diff_id: str = sha256(PLAIN)) -> None:
    write_layout(root / "layout", [Blob(data, LAYER_TYPES[media], diff_id)])


def _plain(root: Path, data: bytes) -> None:
    write_layout(root / "layout", [plain_layer(data)])


# -- layer compression streams (digests match the broken bytes) ---------------------------


@case("gzip-truncated", "stream", "gzip layer cut in half", refuse=DECOMPRESSING, error="truncated gzip")
def _(root: Path) -> None:
    _layer(root, GZ[: len(GZ) // 2], "gzip")


@case("gzip-bad-crc", "stream", "gzip layer with a wrong CRC-32", refuse=DECOMPRESSING, error="corrupt gzip")
def _(root: Path) -> None:
    _layer(root, GZ[:-8] + bytes(b ^ 0xFF for b in GZ[-8:-4]) + GZ[-4:], "gzip")


@case("gzip-bad-deflate", "stream", "gzip layer with garbage in the deflate data", refuse=DECOMPRESSING, error="gzip")
def _(root: Path) -> None:
    _layer(root, GZ[:12] + b"\xff" * 24 + GZ[36:], "gzip")


@case("gzip-trailing-garbage", "stream", "gzip layer followed by junk", refuse=DECOMPRESSING, error="trailing garbage")
def _(root: Path) -> None:
    _layer(root, GZ + b"not gzip at all", "gzip")


@case("zstd-truncated", "stream", "zstd layer cut in half", refuse=DECOMPRESSING, error="truncated zstd")
def _(root: Path) -> None:
    _layer(root, ZST[: len(ZST) // 2], "zstd")


@case("zstd-corrupt", "stream", "zstd layer with garbage in a block", refuse=DECOMPRESSING, error="zstd")
def _(root: Path) -> None:
    _layer(root, ZST[:20] + b"\xff" * 16 + ZST[36:], "zstd")


@case("zstd-trailing-garbage", "stream", "zstd layer followed by junk", refuse=DECOMPRESSING, error="zstd")
def _(root: Path) -> None:
    _layer(root, ZST + b"not zstd at all", "zstd")


@case("gzip-not-tar", "stream", "gzip layer holding random bytes", refuse=DECOMPRESSING, error="tar")
def _(root: Path) -> None:
    _layer(root, gz(NOISE), "gzip", sha256(NOISE))


@case("layer-garbage", "stream", "uncompressed layer of random bytes", refuse=DECOMPRESSING, error="tar")
def _(root: Path) -> None:
    _plain(root, NOISE)


@case("gzip-labelled-zstd", "stream", "zstd bytes under a +gzip media type", refuse=(), error="")
def _(root: Path) -> None:
    _layer(root, ZST, "gzip")


# -- whole docker-save archives -----------------------------------------------------------


def _archive(root: Path) -> bytes:
    docker_save(root / "good.tar")
    data = (root / "good.tar").read_bytes()
    (root / "good.tar").unlink()
    return data


@case("archive-truncated", "archive", "docker-save archive cut in half", TAR, error="truncated|ends early|missing|not")
def _(root: Path) -> None:
    data = _archive(root)
    (root / "image.tar").write_bytes(data[: len(data) // 2])


@case("archive-truncated-header", "archive", "archive cut inside a member header", TAR, error="truncated|partial|corrupt")
def _(root: Path) -> None:
    (root / "image.tar").write_bytes(_archive(root)[: 512 + 200])


@case("archive-truncated-stdin", "archive", "archive cut in half, read from stdin", "tar://-", error="truncated|ends early|missing", stdin="image.tar")
def _(root: Path) -> None:
    data = _archive(root)
    (root / "image.tar").write_bytes(data[: len(data) // 2])


@case("archive-bad-checksum", "archive", "first archive header with a wrong checksum", TAR, error="corrupt tar header|checksum")
def _(root: Path) -> None:
    data = bytearray(_archive(root))
    data[148:156] = b"0001234\0"
    (root / "image.tar").write_bytes(bytes(data))


@case("archive-garbage", "archive", "20 KiB of random bytes as an archive", TAR, error="tar|archive")
def _(root: Path) -> None:
    (root / "image.tar").write_bytes(random.Random(1).randbytes(20480))


@case("archive-empty", "archive", "an empty file as an archive", TAR, error="empty")
def _(root: Path) -> None:
    (root / "image.tar").write_bytes(b"")


@case("archive-gzip-truncated", "archive", "docker save | gzip, cut in half", TAR, error="truncated gzip")
def _(root: Path) -> None:
    packed = gz(_archive(root))
    (root / "image.tar").write_bytes(packed[: len(packed) // 2])


@case("archive-gzip-bad-crc", "archive", "docker save | gzip with a wrong CRC", TAR, error="corrupt gzip")
def _(root: Path) -> None:
    packed = gz(_archive(root))
    (root / "image.tar").write_bytes(packed[:-8] + b"\0\0\0\0" + packed[-4:])


@case("archive-zstd-truncated", "archive", "docker save | zstd, cut in half", TAR, error="truncated zstd")
def _(root: Path) -> None:
    packed = zst(_archive(root))
    (root / "image.tar").write_bytes(packed[: len(packed) // 2])


@case("archive-layer-not-tar", "archive", "layer.tar member of random bytes (diff_id matches)", TAR, refuse=DECOMPRESSING, error="tar")
def _(root: Path) -> None:
    docker_save(root / "image.tar", [NOISE])


@case("archive-layer-truncated-tar", "archive", "layer.tar member holding a tar cut mid-body", TAR, refuse=DECOMPRESSING, error="truncated tar")
def _(root: Path) -> None:
    big = tar_of([*BASE, file("big", NOISE)])
    docker_save(root / "image.tar", [big[:2048]])


# -- tar headers inside a layer (uncompressed, digests match) -----------------------------


def _tar_case(id: str, summary: str, error: str, data: bytes, refuse: frozenset[str] = DECOMPRESSING) -> None:
    case(id, "tar-header", summary, refuse=refuse, error=error)(lambda root: _plain(root, data))


_tar_case("tar-bad-checksum", "member header with a wrong checksum", "corrupt tar header",
          OK_MEMBER + member("b.txt", b"b", checksum=b"0012345\0") + end())  # fmt: skip
_tar_case("tar-absurd-size", "size field 8 GiB on a 7-byte member", "truncated tar",
          header("big.bin", size=b"77777777777\0") + b"benign\n".ljust(512, b"\0") + end())  # fmt: skip
_tar_case("tar-negative-size", "base-256 size field holding -1", "negative or oversized",
          header("neg.bin", size=b"\xff" * 12) + end())  # fmt: skip
_tar_case("tar-size-not-octal", "size field with a non-octal digit", "bad number field",
          header("x.bin", size=b"0000000009z\0") + end())  # fmt: skip
_tar_case("tar-pax-size-absurd", "PAX size of 10^24", "bad PAX",
          pax_member({"size": "1" + "0" * 24}, "x.bin", b"") + end())  # fmt: skip
_tar_case("tar-pax-bad-record", "PAX record whose length overruns the header", "bad PAX record",
          member("PaxHeader/x", b"999 path=x\n", kind=b"x") + OK_MEMBER + end())  # fmt: skip
_tar_case("tar-pax-huge", "PAX header claiming 2 MiB of records", "extended header",
          header("PaxHeader/x", size=2 << 20, kind=b"x") + end())  # fmt: skip
_tar_case("tar-longname-huge", "GNU long name claiming 2 MiB", "extended header",
          header("././@LongLink", size=2 << 20, kind=b"L") + end())  # fmt: skip
_tar_case("tar-pax-nul-name", "PAX path holding a NUL byte", "NUL",
          pax_member({"path": "a\0b"}, "x.bin", b"x") + end())  # fmt: skip
_tar_case("tar-empty-name", "member with an empty name", "empty name",
          member("", b"x") + end())  # fmt: skip
_tar_case("tar-sparse-overlap", "PAX 0.1 sparse map with overlapping regions", "bad sparse map",
          pax_member({"GNU.sparse.major": "0", "GNU.sparse.minor": "1",
                      "GNU.sparse.map": "0,512,100,512", "GNU.sparse.realsize": "4096",
                      "GNU.sparse.name": "s.bin"}, "GNUSparseFile.0/s.bin", bytes(1024))
          + end())  # fmt: skip
_tar_case("tar-sparse-bomb-pax", "PAX 1.0 sparse member of 1 TiB from 512 stored bytes",
          "sparse tar member expands",
          pax_member({"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                      "GNU.sparse.name": "bomb.bin", "GNU.sparse.realsize": str(1 << 40)},
                     "GNUSparseFile.0/bomb.bin", b"1\n0\n512\n".ljust(512, b"\0") + bytes(512))
          + end())  # fmt: skip
_GNU_SPARSE = {257: b"ustar  \0", 386: b"00000000000\0" + b"00000001000\0",
               483: b"\x80" + (1 << 40).to_bytes(11, "big")}  # fmt: skip
_tar_case("tar-sparse-bomb-gnu", "old GNU sparse member of 1 TiB from 512 stored bytes",
          "sparse tar member expands",
          header("bomb.bin", size=512, kind=tarfile.GNUTYPE_SPARSE, extra=_GNU_SPARSE)
          + bytes(512) + end())  # fmt: skip
_tar_case("tar-no-end-marker", "layer without the two zero blocks (tolerated)", "",
          OK_MEMBER, refuse=frozenset())  # fmt: skip
_tar_case("tar-junk-after-end", "non-zero bytes after the end marker (tolerated)", "",
          OK_MEMBER + end() + b"junk".ljust(512, b"\0"), refuse=frozenset())  # fmt: skip
_tar_case("tar-pax-only", "a PAX header with no member after it", "extended header without",
          member("PaxHeader/x", pax_records({"path": "a"}), kind=b"x") + end())  # fmt: skip


# -- decompression bombs ------------------------------------------------------------------

BOMB_SIZE = (1 << 30) + (64 << 20)  # over the 1 GiB floor of the default cap


def _bomb_tar_stream() -> tuple[bytes, bytes, str]:
    """(tar header, trailer, diff_id) of a tar holding one member of BOMB_SIZE zeros."""
    head = header("zeros.bin", size=BOMB_SIZE)
    tail = end()
    h = hashlib.sha256(head)
    zero = bytes(1 << 20)
    for _ in range(BOMB_SIZE >> 20):
        h.update(zero)
    h.update(tail)
    return head, tail, "sha256:" + h.hexdigest()


def _bomb(root: Path, kind: str) -> None:
    import gzip as _gzip
    import io

    import zstandard

    head, tail, diff_id = _bomb_tar_stream()
    out = io.BytesIO()
    zero = bytes(1 << 20)
    if kind == "gzip":
        writer: object = _gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9)
    else:
        cctx = zstandard.ZstdCompressor(level=19, write_checksum=True)
        writer = cctx.stream_writer(out, closefd=False)
    with writer:  # type: ignore[attr-defined]
        writer.write(head)  # type: ignore[attr-defined]
        for _ in range(BOMB_SIZE >> 20):
            writer.write(zero)  # type: ignore[attr-defined]
        writer.write(tail)  # type: ignore[attr-defined]
    _layer(root, out.getvalue(), kind, diff_id)


@case("gzip-bomb", "bomb", "gzip layer expanding 1000:1 to 1.06 GiB", refuse=DECOMPRESSING, error="exceeds the limit")
def _(root: Path) -> None:
    _bomb(root, "gzip")


@case("zstd-bomb", "bomb", "zstd layer expanding to 1.06 GiB from a few KiB", refuse=DECOMPRESSING, error="exceeds the limit")
def _(root: Path) -> None:
    _bomb(root, "zstd")

