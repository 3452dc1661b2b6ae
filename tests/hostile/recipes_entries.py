"""Recipes: layer entries that try to escape the root or confuse extraction.

Layers are valid tars; only outputs that extract them (``dir-expand``, ``bundle``) can be
hurt, so those must refuse the escaping ones. Every other output carries the layer as
bytes. Escapes aim at the lab's harmless spots (``lab.hostile.ESCAPE_DIR``/``SENTINEL``).
"""

from __future__ import annotations

from pathlib import Path

from lab.hostile import ESCAPE_DIR, UP, hostile_layer
from lab.tarspec import TarSpec, directory, file, hardlink, symlink

from .cases import EXTRACTING, NONE, case
from .craft import BASE, gzip_layer, write_layout

TAR = "tar://{case}/image.tar"


def _layers(root: Path, *layers: list[TarSpec]) -> None:
    write_layout(root / "layout", [gzip_layer([*BASE, *specs]) for specs in layers])


def _lab(kind: str, cls: str, summary: str, refuse: frozenset[str], error: str) -> None:
    def build(root: Path) -> None:
        write_layout(root / "layout", [gzip_layer(hostile_layer(kind))])

    case(f"lab-{kind}", cls, summary, refuse=refuse, error=error)(build)


_lab(
    "traversal",
    "paths",
    "'../' leading and in the middle of names",
    EXTRACTING,
    "climbs above the root",
)
_lab("absolute", "paths", "absolute member names", EXTRACTING, "absolute path")
_lab(
    "symlink-escape",
    "links",
    "symlinks out of the root, then files written through them",
    EXTRACTING,
    "symlink on the path climbs",
)
_lab(
    "hardlink-escape",
    "links",
    "hard links to a file outside the root",
    EXTRACTING,
    "climbs above the root",
)
_lab("duplicate", "duplicates", "the same path twice; a file then a directory", NONE, "")
_lab(
    "bare-whiteout",
    "whiteouts",
    "'.wh.' with nothing after it",
    EXTRACTING | {"ocidir+filter"},
    "whiteout",
)
_lab("device", "devices", "character and block device nodes", NONE, "")


def _entries(
    id: str,
    cls: str,
    summary: str,
    error: str,
    *layers: list[TarSpec],
    refuse: frozenset[str] = EXTRACTING,
) -> None:
    case(id, cls, summary, refuse=refuse, error=error)(lambda root: _layers(root, *layers))


_entries("symlink-parent-next-layer", "links", "layer 1: 'etc' -> outside; layer 2 writes etc/passwd",
         "symlink on the path climbs",
         [symlink("etc", f"{UP}tmp/occystrap-lab-hostile")], [file("etc/passwd", "root::0:0::/:/bin/sh\n")])  # fmt: skip
_entries("symlink-abs-parent-next-layer", "links", "layer 1: 'etc' -> /tmp/...; layer 2 writes through it (stays inside)",
         "", [symlink("etc", ESCAPE_DIR)], [file("etc/inside.txt", "resolved inside the root\n")],
         refuse=NONE)  # fmt: skip
_entries("hardlink-through-symlink", "links", "hard link whose target path crosses an escaping symlink",
         "symlink on the path climbs|climbs above",
         [symlink("l", f"{UP}tmp"), hardlink("h", "l/occystrap-lab-hostile-sentinel")])  # fmt: skip
_entries("symlink-then-mkdir", "links", "directory created through an escaping symlink",
         "symlink on the path climbs", [symlink("d", f"{UP}tmp"), directory("d/occystrap-lab-hostile")])  # fmt: skip
_entries("whiteout-through-symlink", "whiteouts", "'.wh.' entry reached through an escaping symlink",
         "symlink on the path climbs",
         [symlink("l", f"{UP}tmp")], [file("l/.wh.occystrap-lab-hostile-sentinel")])  # fmt: skip
_entries("opaque-through-symlink", "whiteouts", "opaque whiteout inside an escaping symlink",
         "symlink on the path climbs",
         [symlink("l", f"{UP}tmp/occystrap-lab-hostile")], [file("l/.wh..wh..opq")])  # fmt: skip
_entries("whiteout-dotdot", "whiteouts", "'.wh...' naming the parent directory", "whiteout|climbs",
         [file("safe/.wh..")], refuse=EXTRACTING | {"ocidir+filter"})  # fmt: skip
_entries("symlink-loop", "links", "two symlinks pointing at each other, then a write through them",
         "symlink|too many|loop", [symlink("a", "b"), symlink("b", "a"), file("a/x.txt", "x")])  # fmt: skip
_entries("dotdot-symlink-chain", "links", "a chain of '..' symlinks that climbs out step by step",
         "climbs", [directory("s1"), symlink("s1/up", ".."), symlink("s2", "s1/up/s1/up/.."),
                    file("s2/occystrap-lab-hostile-chain.txt", "x")])  # fmt: skip


@case(
    "archive-member-escape",
    "paths",
    "docker-save whose manifest.json points outside the archive",
    TAR,
    error="unsafe|outside|absolute|'\\.\\.'",
)
def _(root: Path) -> None:
    from lab.hostile import hostile_manifest_archive

    hostile_manifest_archive(root / "image.tar")


@case(
    "archive-layer-symlink-escape",
    "paths",
    "docker-save whose layer.tar is a symlink out of the archive",
    TAR,
    error="unsafe|outside|'\\.\\.'|escape",
)
def _(root: Path) -> None:
    from lab.archive import open_archive

    from .craft import base_config, canonical, sha256, tar_of

    config = canonical(base_config([sha256(tar_of(BASE))]))
    with open_archive(root / "image.tar") as ar:
        ar.dir("00")
        ar.symlink("00/layer.tar", "../../../../../../etc/hostname")
        ar.data("c.json", config)
        ar.json(
            "manifest.json",
            [{"Config": "c.json", "RepoTags": ["lab/x:1"], "Layers": ["00/layer.tar"]}],
        )
