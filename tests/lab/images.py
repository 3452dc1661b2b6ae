"""Deterministic fixture images, built without occystrap's own code.

This module is the one place tests import image builders from. It defines the busybox image
and the big streaming layer, and re-exports the builders that live in their own modules:
``tarspec`` (layer entries), ``ocilayout`` (OCI layouts), ``edgecase`` (the edge-case image),
``dockersave`` (docker-save tarball flavours) and ``hostile`` (malicious archives).
"""

from __future__ import annotations

import hashlib
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .dockersave import (
    docker_save_containerd,
    docker_save_legacy,
    docker_save_multi,
    docker_save_oci,
    docker_save_podman,
    docker_save_pre110,
    gzip_archive,
    to_docker_archive,
)
from .edgecase import EXPECT, Expectations, check_rootfs, edge_case_layers
from .hostile import (
    HOSTILE_KINDS,
    hostile_docker_archive,
    hostile_layer,
    hostile_manifest_archive,
    hostile_oci_layout,
)
from .ocilayout import LayoutInfo, build_oci_layout, open_layer
from .tarspec import TarSpec, directory, file, symlink, write_layer_tar
from .tools import require

__all__ = [
    "EXPECT",
    "HOSTILE_KINDS",
    "BigLayer",
    "Expectations",
    "LayoutInfo",
    "TarSpec",
    "big_layer_file",
    "build_oci_layout",
    "busybox_layers",
    "check_rootfs",
    "docker_save_containerd",
    "docker_save_legacy",
    "docker_save_multi",
    "docker_save_oci",
    "docker_save_podman",
    "docker_save_pre110",
    "edge_case_layers",
    "gzip_archive",
    "hostile_docker_archive",
    "hostile_layer",
    "hostile_manifest_archive",
    "hostile_oci_layout",
    "open_layer",
    "to_docker_archive",
    "write_layer_tar",
]

CHUNK = 1 << 20


def busybox_layers() -> list[list[TarSpec]]:
    """One layer: /bin/busybox (static, from busybox-static) with sh/ls/cat/echo links, /etc, /tmp."""
    busybox = Path(require("busybox")).resolve()
    bin_links = [symlink(f"bin/{name}", "busybox") for name in ("sh", "ls", "cat", "echo", "true")]
    return [
        [
            directory("bin"),
            file("bin/busybox", mode=0o755, source=busybox),
            *bin_links,
            directory("etc"),
            file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"),
            file("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
            directory("root", 0o700),
            directory("tmp", 0o1777),
        ]
    ]


@dataclass(frozen=True)
class BigLayer:
    path: Path
    diff_id: str  # sha256 of the tar file
    tar_size: int  # bytes of the tar file
    content_size: int  # bytes of file content inside


def big_layer_file(path: Path | str, size: int, seed: int = 0, files: int = 1) -> BigLayer:
    """Write an uncompressed layer tar holding ``size`` bytes of incompressible data.

    The data is split over ``files`` files under ``big/`` and generated 1 MiB at a time from
    ``random.Random(seed)``, so memory stays flat and the same arguments give the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    digest = hashlib.sha256()
    written = 0

    with open(path, "wb") as out:

        def emit(data: bytes) -> None:
            nonlocal written
            out.write(data)
            digest.update(data)
            written += len(data)

        top = tarfile.TarInfo("big")
        top.type, top.mode, top.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
        emit(top.tobuf(tarfile.PAX_FORMAT, "utf-8"))
        sizes = [size // files + (1 if i < size % files else 0) for i in range(files)]
        for i, file_size in enumerate(sizes):
            info = tarfile.TarInfo(f"big/random-{i}.bin")
            info.size, info.mode, info.mtime = file_size, 0o644, 1_700_000_000
            emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8"))
            left = file_size
            while left:
                n = min(CHUNK, left)
                emit(rng.randbytes(n))
                left -= n
            if file_size % tarfile.BLOCKSIZE:
                emit(bytes(tarfile.BLOCKSIZE - file_size % tarfile.BLOCKSIZE))
        emit(bytes(2 * tarfile.BLOCKSIZE))
        if written % tarfile.RECORDSIZE:
            emit(bytes(tarfile.RECORDSIZE - written % tarfile.RECORDSIZE))
    return BigLayer(path, "sha256:" + digest.hexdigest(), written, size)
