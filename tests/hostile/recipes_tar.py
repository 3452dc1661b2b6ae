"""Recipes: tar headers inside a layer that lie, overflow or expand; decompression bombs."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from .cases import DECOMPRESSING, case
from .craft import end, header, member, pax_member, pax_records
from .recipes_streams import OK_MEMBER, _layer, _plain

# -- tar headers inside a layer (uncompressed, digests match) -----------------------------


def _tar_case(
    id: str, summary: str, error: str, data: bytes, refuse: frozenset[str] = DECOMPRESSING
) -> None:
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
        writer: object = _gzip.GzipFile(
            filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9
        )
    else:
        cctx = zstandard.ZstdCompressor(level=19, write_checksum=True)
        writer = cctx.stream_writer(out, closefd=False)
    with writer:  # type: ignore[attr-defined]
        writer.write(head)  # type: ignore[attr-defined]
        for _ in range(BOMB_SIZE >> 20):
            writer.write(zero)  # type: ignore[attr-defined]
        writer.write(tail)  # type: ignore[attr-defined]
    _layer(root, out.getvalue(), kind, diff_id)


@case(
    "gzip-bomb",
    "bomb",
    "gzip layer expanding 1000:1 to 1.06 GiB",
    refuse=DECOMPRESSING,
    error="exceeds the limit",
)
def _(root: Path) -> None:
    _bomb(root, "gzip")


@case(
    "zstd-bomb",
    "bomb",
    "zstd layer expanding to 1.06 GiB from a few KiB",
    refuse=DECOMPRESSING,
    error="exceeds the limit",
)
def _(root: Path) -> None:
    _bomb(root, "zstd")
