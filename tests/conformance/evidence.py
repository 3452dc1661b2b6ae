"""Evidence about outputs, gathered without occystrap's code: sha256 of files, snapshots of
trees (type, mode, owner, content, link target, xattrs, mtime, hard links), and the images of
an OCI layout read by hand or after ``skopeo copy`` (which verifies every digest it copies).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import schemas
from lab.tools import skopeo

CHUNK = 1 << 20
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hexof(digest: str) -> str:
    return digest.split(":", 1)[1]


def _xattrs(path: Path) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {
        n: os.getxattr(path, n, follow_symlinks=False).hex()
        for n in sorted(names)
        if n != "security.selinux"
    }


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            yield path.relative_to(root).as_posix(), path


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """path -> type, mode, owner, size + sha256 | link target | device, xattrs, mtime, and the
    other paths sharing its inode, for every entry under ``root`` (``skip``: subtrees left out)."""
    out: dict[str, dict[str, Any]] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for rel, path in _walk(root):
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        st = os.lstat(path)
        rec: dict[str, Any] = {
            "type": stat.filemode(st.st_mode)[0],
            "owner": (st.st_uid, st.st_gid),
            "xattrs": _xattrs(path),
        }
        if not stat.S_ISLNK(st.st_mode):
            rec["mode"] = oct(stat.S_IMODE(st.st_mode))
        if stat.S_ISREG(st.st_mode):
            rec["size"], rec["sha256"] = st.st_size, sha256_file(path)
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        elif stat.S_ISLNK(st.st_mode):
            rec["link"] = os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            rec["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
        rec["mtime"] = int(st.st_mtime)
        out[rel] = rec
    for group in inodes.values():
        for rel in group if len(group) > 1 else ():
            out[rel]["hardlinks"] = sorted(group)
    return out


def fingerprint(path: Path) -> str:
    """sha256 over everything a judge could look at: a file's bytes, or a tree's snapshot."""
    if path.is_file():
        return sha256_file(path)
    return sha256_bytes(json.dumps(snapshot(path), sort_keys=True, default=list).encode())


def tree_diff(ours: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]]) -> list[str]:
    """Differences between two snapshots, one line each (empty: identical)."""
    problems = [f"{p}: only in ours" for p in sorted(set(ours) - set(theirs))]
    problems += [f"{p}: missing" for p in sorted(set(theirs) - set(ours))]
    for p in sorted(set(ours) & set(theirs)):
        if ours[p] != theirs[p]:
            keys = sorted(
                k for k in ours[p].keys() | theirs[p].keys() if ours[p].get(k) != theirs[p].get(k)
            )
            problems.append(
                f"{p}: "
                + ", ".join(f"{k} {ours[p].get(k)!r} != {theirs[p].get(k)!r}" for k in keys)
            )
    return problems


@dataclass(frozen=True)
class OciImage:
    """One image of an OCI layout: its manifest and config, parsed."""

    manifest_digest: str
    manifest: dict[str, Any]
    config_digest: str
    config: dict[str, Any]

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(self.config["rootfs"]["diff_ids"])

    @property
    def layer_digests(self) -> tuple[str, ...]:
        return tuple(layer["digest"] for layer in self.manifest["layers"])


def _blob(layout: Path, digest: str) -> bytes:
    algo, _, hexpart = digest.partition(":")
    return (layout / "blobs" / algo / hexpart).read_bytes()


def read_layout(layout: Path, ref: str) -> OciImage:
    index = json.loads((layout / "index.json").read_text())
    entries = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == ref]
    assert len(entries) == 1, f"{layout}: {len(entries)} index entries named {ref!r}: {index}"
    desc = entries[0]
    while desc["mediaType"] in INDEX_TYPES:  # nested index: take its only (or amd64) entry
        nested = json.loads(_blob(layout, desc["digest"]))
        desc = nested["manifests"][0]
    manifest = json.loads(_blob(layout, desc["digest"]))
    config_digest = manifest["config"]["digest"]
    config = json.loads(_blob(layout, config_digest))
    return OciImage(desc["digest"], manifest, config_digest, config)


def skopeo_to_oci(src: str, dst: Path, *flags: str) -> OciImage:
    """``skopeo copy SRC oci:DST:check`` (skopeo verifies every digest and diff_id it copies)."""
    shutil.rmtree(dst, ignore_errors=True)
    skopeo("copy", *flags, src, f"oci:{dst}:check")
    return read_layout(dst, "check")


def validate_layout_documents(layout: Path) -> int:
    """Schema-check oci-layout, index.json and every index, manifest and config they reach;
    every blob reached must hash to its name. Returns how many documents were checked."""
    schemas.validate("layout", layout / "oci-layout")
    index = json.loads((layout / "index.json").read_text())
    schemas.validate("index", index)
    checked, todo = 2, list(index["manifests"])
    while todo:
        desc = todo.pop()
        data = _blob(layout, desc["digest"])
        assert sha256_bytes(data) == desc["digest"] and len(data) == desc["size"], desc
        doc = json.loads(data)
        if desc["mediaType"] in INDEX_TYPES:
            schemas.validate("index", doc)
            todo += doc["manifests"]
        else:
            schemas.validate("manifest", doc)
            config = _blob(layout, doc["config"]["digest"])
            assert sha256_bytes(config) == doc["config"]["digest"], doc["config"]
            schemas.validate("config", config)
            checked += 1
        checked += 1
    return checked
