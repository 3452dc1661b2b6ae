"""A three-layer image with every layer-tar edge case, and what its flattened rootfs must be.

``edge_case_layers()`` gives the layers; ``EXPECT`` says what an applier that follows the OCI
image spec must produce; ``check_rootfs(root)`` compares an unpacked tree with it and returns
the differences (empty list = correct).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .tarspec import TarSpec, directory, fifo, file, hardlink, opaque, symlink, whiteout

UNICODE_NAME = "opt/ünïcødé-файл-文件-🐳.txt"
UNICODE_DIR_FILE = "opt/Ωmega-dir/naïve café.txt"
LONG_DIR = "opt/long/" + "a" * 60
LONG_NAME = f"{LONG_DIR}/{'f' * 120}.txt"  # path > 100 bytes
DEEP_DIRS = ["opt/deep"] + [
    "opt/deep/" + "/".join(c * 60 for c in "bcdeg"[: i + 1]) for i in range(5)
]
VERY_LONG_NAME = DEEP_DIRS[-1] + "/file.txt"  # path > 255 bytes
# struct vfs_cap_data v2, effective, permitted = CAP_NET_RAW (13): what `setcap cap_net_raw+ep` writes
CAP_NET_RAW = bytes([1, 0, 0, 2, 0, 0x20, 0, 0]) + bytes(12)
BINARY_XATTR = bytes(range(16))


def _layer1() -> list[TarSpec]:
    return [
        directory("etc"),
        file("etc/debian_version", "12.0\n"),
        file("etc/hostname", "lab\n"),
        directory("etc/skel"),
        file("etc/skel/.bashrc", "# base bashrc\n"),
        file("etc/skel/.profile", "# base profile\n"),
        directory("usr"),
        directory("usr/lib"),
        file("usr/lib/libold.so", "old"),
        directory("usr/lib/sub"),
        file("usr/lib/sub/deep.so", "deep"),
        directory("usr/libexec"),
        file("usr/libexec/helper", "#!/bin/sh\n", 0o755),
        file("usr/lib.conf", "sibling\n"),
        directory("opt"),
        directory("opt/gone-dir"),
        file("opt/gone-dir/x", "x"),
        directory("opt/gone-dir/sub"),
        file("opt/gone-dir/sub/y", "y"),
        directory("opt/gone-dir-sibling"),
        file("opt/gone-dir-sibling/keep", "keep"),
        directory("deep"),
        *(directory("deep/" + "/".join("abcd"[: i + 1])) for i in range(4)),
        file("deep/a/b/c/d/e.txt", "e"),
        file("deep/a/b/c/d/keep.txt", "keep"),
        directory("var"),
        directory("var/lib"),
        file("var/lib/orig.txt", "lower layer file\n"),
        directory("srv"),
        file("srv/file-to-dir", "a file in layer 1\n"),
        directory("srv/dir-to-file"),
        file("srv/dir-to-file/inner", "inner\n"),
    ]


def _layer2() -> list[TarSpec]:
    return [
        directory("etc"),
        whiteout("etc/debian_version"),  # file whiteout
        file("etc/hostname", "lab2\n"),  # content change
        directory("etc/skel"),
        opaque("etc/skel"),  # opaque dir ...
        file("etc/skel/.bashrc", "# layer 2 bashrc\n"),  # ... refilled in the same layer
        directory("usr/lib"),
        opaque("usr/lib"),  # must not touch usr/libexec nor usr/lib.conf
        file("usr/lib/libnew.so", "new"),
        whiteout("opt/gone-dir"),  # directory whiteout; opt/gone-dir-sibling survives
        whiteout("deep/a/b/c/d/e.txt"),  # nested whiteout, deep path
        directory("opt/same"),
        file("opt/same/tmp.txt", "same layer\n"),
        whiteout("opt/same/tmp.txt"),  # whiteout of a path this very layer added
        directory("opt/links"),
        file("opt/links/orig.txt", "link target\n"),
        hardlink("opt/links/hard1", "opt/links/orig.txt"),
        directory("opt/links/sub"),
        hardlink("opt/links/sub/hard2", "opt/links/orig.txt"),
        hardlink("opt/links/to-lower", "var/lib/orig.txt"),  # to a layer-1 file
        symlink("opt/links/rel", "orig.txt"),
        symlink("opt/links/abs", "/etc/skel/.bashrc"),
        symlink("opt/links/dangling", "../does-not-exist"),
        symlink("opt/links/dirlink", "../../etc"),
        directory("opt/perm"),
        file("opt/perm/suid", "#!/bin/sh\n", 0o4755),
        directory("opt/perm/sgid-dir", 0o2775),
        directory("opt/perm/sticky", 0o1777),
        file("opt/perm/zero", "nobody may read this\n", 0o000),
        directory("opt/long"),
        directory(LONG_DIR),
        file(LONG_NAME, "long name\n"),
        *(directory(d) for d in DEEP_DIRS),
        file(VERY_LONG_NAME, "very long path\n"),
        file(UNICODE_NAME, "unicode\n"),
        directory("opt/Ωmega-dir"),
        file(UNICODE_DIR_FILE, "café\n"),
        directory("opt/x"),
        file(
            "opt/x/xattr.txt",
            "xattrs\n",
            xattrs={"user.lab.comment": b"hello xattr", "user.lab.binary": BINARY_XATTR},
        ),
        file("opt/x/cap", "fake binary\n", 0o755, xattrs={"security.capability": CAP_NET_RAW}),
        directory("opt/ids"),
        file("opt/ids/big-uid", "uid 3000000\n", uid=3_000_000, gid=3_000_000),
        file("opt/ids/user", "uid 1000\n", uid=1000, gid=1000),
        directory("opt/special"),
        fifo("opt/special/fifo"),
        directory("opt/empty"),
        file("opt/empty/file"),
        directory("opt/empty/dir"),
        file("./opt/dot-prefixed.txt", "dot\n"),  # './'-prefixed name
        file("opt/late/child.txt", "late\n"),  # child before ...
        directory("opt/late", 0o750),  # ... its directory entry
        directory("opt/opq"),
        file("opt/opq/a", "a"),
        directory("opt/opq/sub"),
        file("opt/opq/sub/b", "b"),
        directory("srv/file-to-dir"),  # a lower file becomes a directory
        file("srv/file-to-dir/inside", "now a dir\n"),
        file("srv/dir-to-file", "now a file\n"),  # a lower directory becomes a file
    ]


def _layer3() -> list[TarSpec]:
    return [
        directory("opt"),
        whiteout("opt/links/rel"),  # whiteout of a layer-2 symlink
        directory("opt/gone-dir"),  # re-create a dir whited out in layer 2
        file("opt/gone-dir/reborn.txt", "back\n"),
        directory("opt/l3"),
        hardlink("opt/l3/hard-to-l2", "opt/links/orig.txt"),
        file("opt/l3/pax-xattr.txt", "pax\n", xattrs={"user.lab3": b"from-pax"}),
        whiteout("opt/never-existed"),  # whiteout of nothing
        directory("opt/opq"),
        file("opt/opq/c", "c"),  # new child listed before the opaque marker
        opaque("opt/opq"),
    ]


def edge_case_layers() -> list[list[TarSpec]]:
    """Three layers, bottom first (see the module docstring of ``edgecase``)."""
    return [_layer1(), _layer2(), _layer3()]


@dataclass(frozen=True)
class Expectations:
    """What the flattened edge-case image must look like (paths relative to the rootfs)."""

    kinds: dict[str, str]  # path -> file | dir | symlink | fifo
    absent: list[str]
    contents: dict[str, bytes]
    modes: dict[str, int]  # permission bits incl. setuid/setgid/sticky
    owners: dict[str, tuple[int, int]]
    symlinks: dict[str, str]
    hardlinks: list[tuple[str, str]]  # pairs that must share an inode
    xattrs: dict[str, dict[str, bytes]]
    # Correct per the OCI spec, but real tools disagree (whiteouts apply to lower layers only).
    spec_only: dict[str, str] = field(default_factory=dict)


EXPECT = Expectations(
    kinds={
        "etc/hostname": "file", "etc/skel/.bashrc": "file", "usr/lib/libnew.so": "file",
        "usr/libexec/helper": "file", "usr/lib.conf": "file", "opt/gone-dir-sibling/keep": "file",
        "opt/gone-dir/reborn.txt": "file", "deep/a/b/c/d/keep.txt": "file",
        "opt/links/hard1": "file", "opt/links/sub/hard2": "file", "opt/links/to-lower": "file",
        "opt/links/abs": "symlink", "opt/links/dangling": "symlink", "opt/links/dirlink": "symlink",
        "opt/perm/sgid-dir": "dir", "opt/perm/sticky": "dir", "opt/perm/zero": "file",
        LONG_NAME: "file", VERY_LONG_NAME: "file", UNICODE_NAME: "file", UNICODE_DIR_FILE: "file",
        "opt/x/cap": "file", "opt/ids/big-uid": "file", "opt/special/fifo": "fifo",
        "opt/empty/file": "file", "opt/empty/dir": "dir", "opt/dot-prefixed.txt": "file",
        "opt/late/child.txt": "file", "opt/late": "dir", "opt/l3/hard-to-l2": "file",
        "opt/l3/pax-xattr.txt": "file", "opt/opq": "dir", "srv/file-to-dir": "dir",
        "srv/file-to-dir/inside": "file", "srv/dir-to-file": "file",
    },
    absent=[
        "etc/debian_version", "etc/skel/.profile", "usr/lib/libold.so", "usr/lib/sub",
        "opt/gone-dir/x", "opt/gone-dir/sub", "deep/a/b/c/d/e.txt", "opt/links/rel",
        "opt/never-existed", "opt/opq/a", "opt/opq/sub",
    ],
    contents={
        "etc/hostname": b"lab2\n", "etc/skel/.bashrc": b"# layer 2 bashrc\n",
        "opt/links/to-lower": b"lower layer file\n", "opt/l3/hard-to-l2": b"link target\n",
        UNICODE_DIR_FILE: "café\n".encode(), "opt/empty/file": b"",
        "srv/dir-to-file": b"now a file\n",
    },
    modes={
        "opt/perm/suid": 0o4755, "opt/perm/sgid-dir": 0o2775, "opt/perm/sticky": 0o1777,
        "opt/perm/zero": 0o000, "opt/late": 0o750, "usr/libexec/helper": 0o755,
    },
    owners={"opt/ids/big-uid": (3_000_000, 3_000_000), "opt/ids/user": (1000, 1000)},
    symlinks={
        "opt/links/abs": "/etc/skel/.bashrc", "opt/links/dangling": "../does-not-exist",
        "opt/links/dirlink": "../../etc",
    },
    hardlinks=[
        ("opt/links/hard1", "opt/links/orig.txt"), ("opt/links/sub/hard2", "opt/links/orig.txt"),
        ("opt/links/to-lower", "var/lib/orig.txt"), ("opt/l3/hard-to-l2", "opt/links/orig.txt"),
    ],
    xattrs={
        "opt/x/xattr.txt": {"user.lab.comment": b"hello xattr", "user.lab.binary": BINARY_XATTR},
        "opt/x/cap": {"security.capability": CAP_NET_RAW},
        "opt/l3/pax-xattr.txt": {"user.lab3": b"from-pax"},
    },
    spec_only={
        "opt/same/tmp.txt": "added and whited out in the same layer: the whiteout does not apply",
        "opt/opq/c": "added in the layer that makes opt/opq opaque, before the marker",
    },
)  # fmt: skip


def _kind(st: os.stat_result) -> str:
    for kind, test in (("dir", stat.S_ISDIR), ("symlink", stat.S_ISLNK), ("fifo", stat.S_ISFIFO)):
        if test(st.st_mode):
            return kind
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def check_rootfs(root: Path, spec_only: bool = True, xattrs: bool = True) -> list[str]:
    """Differences between the unpacked tree at ``root`` and ``EXPECT`` (empty = correct).

    ``spec_only=False`` skips the paths where real tools knowingly differ from the spec;
    ``xattrs=False`` skips xattr checks (e.g. for a filesystem without user xattrs).
    """
    problems: list[str] = []

    def lstat(rel: str) -> os.stat_result | None:
        try:
            return os.lstat(root / rel)
        except OSError:
            return None

    for rel, kind in EXPECT.kinds.items():
        st = lstat(rel)
        if st is None or _kind(st) != kind:
            problems.append(f"{rel}: expected {kind}, got {'nothing' if st is None else _kind(st)}")
    problems += [f"{rel}: should be absent" for rel in EXPECT.absent if lstat(rel) is not None]
    if spec_only:
        problems += [
            f"{rel}: missing ({why})" for rel, why in EXPECT.spec_only.items() if lstat(rel) is None
        ]
    for rel, data in EXPECT.contents.items():
        if lstat(rel) is not None and (root / rel).read_bytes() != data:
            problems.append(f"{rel}: wrong content")
    for rel, mode in EXPECT.modes.items():
        st = lstat(rel)
        if st is not None and stat.S_IMODE(st.st_mode) != mode:
            problems.append(f"{rel}: mode {stat.S_IMODE(st.st_mode):o}, expected {mode:o}")
    for rel, owner in EXPECT.owners.items():
        st = lstat(rel)
        if st is not None and (st.st_uid, st.st_gid) != owner:
            problems.append(f"{rel}: owner {st.st_uid}:{st.st_gid}, expected {owner[0]}:{owner[1]}")
    for rel, target in EXPECT.symlinks.items():
        if lstat(rel) is not None and os.readlink(root / rel) != target:
            problems.append(f"{rel}: symlink to {os.readlink(root / rel)!r}, expected {target!r}")
    for a, b in EXPECT.hardlinks:
        sa, sb = lstat(a), lstat(b)
        if sa is None or sb is None or (sa.st_dev, sa.st_ino) != (sb.st_dev, sb.st_ino):
            problems.append(f"{a}: not a hard link of {b}")
    for rel, wanted in EXPECT.xattrs.items() if xattrs else ():
        for name, value in wanted.items():
            try:
                got = os.getxattr(root / rel, name, follow_symlinks=False)
            except OSError as err:
                problems.append(f"{rel}: xattr {name} missing ({err.strerror})")
                continue
            if got != value:
                problems.append(f"{rel}: xattr {name} = {got!r}, expected {value!r}")
    for dirpath, dirnames, filenames in os.walk(root):
        problems += [
            f"{dirpath}/{n}: whiteout left in the tree"
            for n in dirnames + filenames
            if n.startswith(".wh.")
        ]
    return problems
