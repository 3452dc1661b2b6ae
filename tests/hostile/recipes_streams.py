"""Recipes: broken byte streams (layer compression, whole archives, tar headers) and bombs."""

from __future__ import annotations

import random
from pathlib import Path

from lab.ocilayout import LAYER_TYPES
from lab.tarspec import file

from .cases import DECOMPRESSING, case
from .craft import (
    BASE,
    Blob,
    docker_save,
    gz,
    member,
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


@case(
    "gzip-truncated",
    "stream",
    "gzip layer cut in half",
    refuse=DECOMPRESSING,
    error="truncated gzip",
)
def _(root: Path) -> None:
    _layer(root, GZ[: len(GZ) // 2], "gzip")


@case(
    "gzip-bad-crc",
    "stream",
    "gzip layer with a wrong CRC-32",
    refuse=DECOMPRESSING,
    error="corrupt gzip",
)
def _(root: Path) -> None:
    _layer(root, GZ[:-8] + bytes(b ^ 0xFF for b in GZ[-8:-4]) + GZ[-4:], "gzip")


@case(
    "gzip-bad-deflate",
    "stream",
    "gzip layer with garbage in the deflate data",
    refuse=DECOMPRESSING,
    error="gzip",
)
def _(root: Path) -> None:
    _layer(root, GZ[:12] + b"\xff" * 24 + GZ[36:], "gzip")


@case(
    "gzip-trailing-garbage",
    "stream",
    "gzip layer followed by junk",
    refuse=DECOMPRESSING,
    error="trailing garbage",
)
def _(root: Path) -> None:
    _layer(root, GZ + b"not gzip at all", "gzip")


@case(
    "zstd-truncated",
    "stream",
    "zstd layer cut in half",
    refuse=DECOMPRESSING,
    error="truncated zstd",
)
def _(root: Path) -> None:
    _layer(root, ZST[: len(ZST) // 2], "zstd")


@case(
    "zstd-corrupt",
    "stream",
    "zstd layer with garbage in a block",
    refuse=DECOMPRESSING,
    error="zstd",
)
def _(root: Path) -> None:
    _layer(root, ZST[:20] + b"\xff" * 16 + ZST[36:], "zstd")


@case(
    "zstd-trailing-garbage",
    "stream",
    "zstd layer followed by junk",
    refuse=DECOMPRESSING,
    error="zstd",
)
def _(root: Path) -> None:
    _layer(root, ZST + b"not zstd at all", "zstd")


@case(
    "gzip-not-tar", "stream", "gzip layer holding random bytes", refuse=DECOMPRESSING, error="tar"
)
def _(root: Path) -> None:
    _layer(root, gz(NOISE), "gzip", sha256(NOISE))


@case(
    "layer-garbage",
    "stream",
    "uncompressed layer of random bytes",
    refuse=DECOMPRESSING,
    error="tar",
)
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


@case(
    "archive-truncated",
    "archive",
    "docker-save archive cut in half",
    TAR,
    error="truncated|ends early|missing|not",
)
def _(root: Path) -> None:
    data = _archive(root)
    (root / "image.tar").write_bytes(data[: len(data) // 2])


@case(
    "archive-truncated-header",
    "archive",
    "archive cut inside a member header",
    TAR,
    error="truncated|partial|corrupt",
)
def _(root: Path) -> None:
    (root / "image.tar").write_bytes(_archive(root)[: 512 + 200])


@case(
    "archive-truncated-stdin",
    "archive",
    "archive cut in half, read from stdin",
    "tar://-",
    error="truncated|ends early|missing",
    stdin="image.tar",
)
def _(root: Path) -> None:
    data = _archive(root)
    (root / "image.tar").write_bytes(data[: len(data) // 2])


@case(
    "archive-bad-checksum",
    "archive",
    "first archive header with a wrong checksum",
    TAR,
    error="corrupt tar header|checksum",
)
def _(root: Path) -> None:
    data = bytearray(_archive(root))
    data[148:156] = b"0001234\0"
    (root / "image.tar").write_bytes(bytes(data))


@case(
    "archive-garbage", "archive", "20 KiB of random bytes as an archive", TAR, error="tar|archive"
)
def _(root: Path) -> None:
    (root / "image.tar").write_bytes(random.Random(1).randbytes(20480))


@case("archive-empty", "archive", "an empty file as an archive", TAR, error="empty")
def _(root: Path) -> None:
    (root / "image.tar").write_bytes(b"")


@case(
    "archive-gzip-truncated",
    "archive",
    "docker save | gzip, cut in half",
    TAR,
    error="truncated gzip",
)
def _(root: Path) -> None:
    packed = gz(_archive(root))
    (root / "image.tar").write_bytes(packed[: len(packed) // 2])


@case(
    "archive-gzip-bad-crc",
    "archive",
    "docker save | gzip with a wrong CRC",
    TAR,
    error="corrupt gzip",
)
def _(root: Path) -> None:
    packed = gz(_archive(root))
    (root / "image.tar").write_bytes(packed[:-8] + b"\0\0\0\0" + packed[-4:])


@case(
    "archive-zstd-truncated",
    "archive",
    "docker save | zstd, cut in half",
    TAR,
    error="truncated zstd",
)
def _(root: Path) -> None:
    packed = zst(_archive(root))
    (root / "image.tar").write_bytes(packed[: len(packed) // 2])


@case(
    "archive-layer-not-tar",
    "archive",
    "layer.tar member of random bytes (diff_id matches)",
    TAR,
    refuse=DECOMPRESSING,
    error="tar",
)
def _(root: Path) -> None:
    docker_save(root / "image.tar", [NOISE])


@case(
    "archive-layer-truncated-tar",
    "archive",
    "layer.tar member holding a tar cut mid-body",
    TAR,
    refuse=DECOMPRESSING,
    error="truncated tar",
)
def _(root: Path) -> None:
    big = tar_of([*BASE, file("big", NOISE)])
    docker_save(root / "image.tar", [big[:2048]])
