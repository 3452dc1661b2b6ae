"""Hostile archives: layer tars (and one docker-save tarball) that try to escape or confuse.

Every escaping entry aims at a harmless, well-known spot so a buggy extractor running as root
does no real damage and a test can see what happened:

* ``ESCAPE_DIR`` (``/tmp/occystrap-lab-hostile``): where traversal/absolute/symlink entries
  would land; a test asserts nothing appears there.
* ``SENTINEL`` (``/tmp/occystrap-lab-hostile-sentinel``): the target of the escaping hard
  links; a test creates it first and asserts it is unchanged afterwards.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .archive import open_archive
from .dockersave import docker_save_legacy
from .ocilayout import Compression, LayoutInfo, build_oci_layout
from .tarspec import TarSpec, device, directory, file, hardlink, symlink, tar_bytes

ESCAPE_DIR = "/tmp/occystrap-lab-hostile"
SENTINEL = "/tmp/occystrap-lab-hostile-sentinel"
UP = "../" * 12  # enough to leave any extraction root

_BASE = [directory("safe"), file("safe/ok.txt", "benign\n")]

_HOSTILE: dict[str, list[TarSpec]] = {
    # ../ in names, leading and in the middle
    "traversal": [
        file(f"{UP}tmp/occystrap-lab-hostile/traversal.txt", "escaped\n"),
        file("safe/../../../../../../../../../../../../tmp/occystrap-lab-hostile/mid.txt", "x"),
    ],
    # absolute member names
    "absolute": [
        directory(ESCAPE_DIR),
        file(f"{ESCAPE_DIR}/absolute.txt", "absolute\n"),
    ],
    # a symlink pointing outside, then a file written through it (relative and absolute)
    "symlink-escape": [
        symlink("link-rel", f"{UP}tmp"),
        file("link-rel/occystrap-lab-hostile-through-rel.txt", "through a relative symlink\n"),
        symlink("link-abs", "/tmp"),
        file("link-abs/occystrap-lab-hostile-through-abs.txt", "through an absolute symlink\n"),
        symlink("safe/dirlink", "../../../../../../../../../../../../tmp"),
        file("safe/dirlink/occystrap-lab-hostile-through-nested.txt", "nested\n"),
    ],
    # hard links whose target is outside the root, then a write through one of them
    "hardlink-escape": [
        hardlink("hard-rel", f"{UP}tmp/occystrap-lab-hostile-sentinel"),
        hardlink("hard-abs", SENTINEL),
        file("hard-abs", "overwritten through a hard link\n"),
    ],
    # the same name twice (last one wins), and a name that is first a file then a dir
    "duplicate": [
        file("dup.txt", "first\n"),
        file("dup.txt", "second\n"),
        file("file-then-dir", "was a file\n"),
        directory("file-then-dir"),
        file("file-then-dir/inner.txt", "inner\n"),
    ],
    # whiteouts with nothing (or '..') after the prefix
    "bare-whiteout": [
        file(".wh."),
        file("safe/.wh."),
        file("safe/.wh.."),
        file("safe/.wh..."),
    ],
    # device nodes
    "device": [
        directory("dev"),
        device("dev/lab-null", 1, 3, "chr"),
        device("dev/lab-disk", 8, 0, "blk"),
    ],
}

HOSTILE_KINDS: tuple[str, ...] = tuple(_HOSTILE)


def hostile_layer(kind: str) -> list[TarSpec]:
    """The entries of hostile layer ``kind`` (one of ``HOSTILE_KINDS``), after two benign ones."""
    if kind not in _HOSTILE:
        raise ValueError(f"unknown hostile kind {kind!r}; use one of {HOSTILE_KINDS}")
    return [*_BASE, *_HOSTILE[kind]]


def hostile_oci_layout(kind: str, path: Path, compression: Compression = "gzip") -> LayoutInfo:
    """An OCI layout whose only layer is hostile layer ``kind`` (tag = ``kind``)."""
    return build_oci_layout(path, [hostile_layer(kind)], tag=kind, compression=compression)


def hostile_docker_archive(kind: str, out: Path) -> Path:
    """A legacy docker-save tarball (``lab/hostile:KIND``) whose only layer is hostile ``kind``."""
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        info = hostile_oci_layout(kind, Path(tmp) / "layout", compression="none")
        return docker_save_legacy(info, out, [f"lab/hostile:{kind}"])


def hostile_manifest_archive(out: Path) -> Path:
    """A docker-save tarball whose manifest.json points outside the archive.

    ``Config`` is ``../../config.json`` and ``Layers`` holds ``../escape/layer.tar`` and an
    absolute path; members named ``../evil.json`` and ``/abs.json`` are present too.
    """
    layer = tar_bytes(_BASE)
    manifest = [
        {
            "Config": "../../config.json",
            "RepoTags": ["lab/hostile:manifest"],
            "Layers": ["../escape/layer.tar", f"{ESCAPE_DIR}/layer.tar"],
        }
    ]
    with open_archive(out) as ar:
        ar.data("../evil.json", b"{}")
        ar.data("/abs.json", b"{}")
        ar.data("escape/layer.tar", layer)
        ar.json("manifest.json", manifest)
        ar.json("repositories", {"lab/hostile": {"manifest": "0" * 64}})
    return out
