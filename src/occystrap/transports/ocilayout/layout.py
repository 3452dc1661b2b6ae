"""What an OCI image layout is on disk: ``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``.

Shared by the ``ocidir://`` source and sink: splitting ``PATH[:REF]``, the ref-name grammar,
which names an entry answers to, reading the two small JSON files with size caps, blob paths,
and the exclusive lock that serialises read-modify-write of ``index.json`` between processes.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ...errors import (
    ImageNotFound,
    InvalidReference,
    LimitExceeded,
    MalformedInput,
    OutputError,
    UnsupportedFormat,
)
from ...model.descriptor import Descriptor
from ...model.digest import Digest
from ...model.jsonfile import load_object
from ...model.media_types import MediaType

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LOCK_FILE = "index.json.lock"
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
#: index.json and manifests are small; refuse anything bigger before reading it.
MAX_INDEX_BYTES = 64 * 1024 * 1024

# annotations.md: ref ::= component ("/" component)*; component ::= alphanum (separator
# alphanum)*; alphanum ::= [A-Za-z0-9]+; separator ::= [-._:@+] | "--"
_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


def split_target(target: str) -> tuple[str, str | None]:
    """``PATH[:REF]``: split at the last ':' only when what follows has no '/'."""
    path, sep, ref = target.rpartition(":")
    if not sep or "/" in ref or not path:
        return target, None
    if not ref:
        raise InvalidReference(f"{target!r} ends with ':' but names no ref")
    return path, ref


def split_source_target(target: str) -> tuple[str, str | None]:
    """Like :func:`split_target`, but a ref may be a full name (``reg/app:v1``).

    When the plain split does not name a layout, the first ':' whose left side is a layout
    directory wins, so ``./dir:docker.io/library/busybox:latest`` works.
    """
    path, ref = split_target(target)
    if is_layout(path):
        return path, ref
    if is_layout(target):  # a directory whose name holds ':'
        return target, None
    for i, ch in enumerate(target):
        if ch == ":" and i > 0 and i < len(target) - 1 and is_layout(target[:i]):
            return target[:i], target[i + 1 :]
    return path, ref


def check_ref_name(ref: str) -> str:
    if not _REF.match(ref):
        raise InvalidReference(
            f"ref name {ref!r} does not follow the OCI grammar (letters, digits, '-._:@+' separators)"
        )
    return ref


def is_layout(path: str) -> bool:
    return os.path.isfile(os.path.join(path, LAYOUT_FILE))


def blob_path(root: str, digest: Digest) -> str:
    """``root/blobs/<alg>/<hex>``; Digest's grammar guarantees neither part holds '/' or '..'."""
    return os.path.join(root, "blobs", digest.algorithm, digest.encoded)


def read_small(path: str, what: str, limit: int = MAX_INDEX_BYTES) -> bytes:
    """A small file's bytes, refusing files over ``limit`` before reading them."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise LimitExceeded(f"{what} is {size} bytes, over the {limit}-byte limit")
            return f.read(limit + 1)
    except FileNotFoundError:
        raise ImageNotFound(f"{what} does not exist") from None
    except IsADirectoryError:
        raise MalformedInput(f"{what} is a directory") from None
    except OSError as e:
        raise MalformedInput(f"cannot read {what}: {e.strerror}") from None


def check_layout_file(root: str) -> None:
    """Raise unless ``root/oci-layout`` says imageLayoutVersion 1.0.0."""
    marker = os.path.join(root, LAYOUT_FILE)
    if not os.path.isdir(root):
        raise ImageNotFound(f"no OCI image layout at {root} (not a directory)")
    if not os.path.exists(marker):
        raise ImageNotFound(f"{root} is not an OCI image layout (no {LAYOUT_FILE} file)")
    obj = load_object(read_small(marker, marker, 1 << 20), marker)
    version = obj.get("imageLayoutVersion")
    if version != LAYOUT_VERSION:
        raise UnsupportedFormat(
            f"{marker} has imageLayoutVersion {version!r}; only {LAYOUT_VERSION!r} is supported"
        )


def load_index_json(root: str) -> tuple[bytes, dict[str, Any]]:
    """``index.json``'s bytes and object; its ``manifests`` must be a list."""
    path = os.path.join(root, INDEX_FILE)
    raw = read_small(path, path)
    obj = load_object(raw, path)
    if obj.get("schemaVersion") != 2:
        raise MalformedInput(f"{path} has schemaVersion {obj.get('schemaVersion')!r}, expected 2")
    if not isinstance(obj.get("manifests"), list):
        raise MalformedInput(f"{path} has no 'manifests' list")
    return raw, obj


def ref_names(entry: Any) -> tuple[str, ...]:
    """The names an index.json entry answers to: its ref name and containerd's full name."""
    ann = entry.get("annotations") if isinstance(entry, dict) else None
    if not isinstance(ann, dict):
        return ()
    return tuple(v for k in (REF_NAME, CONTAINERD_NAME) if isinstance(v := ann.get(k), str))


def answers_to(ref: str, names: Sequence[str]) -> bool:
    """A ref matches a ref name or containerd name exactly, or a docker.io short form of it."""
    for name in names:
        if ref == name:
            return True
        for prefix in ("docker.io/library/", "docker.io/"):
            if name.startswith(prefix) and name[len(prefix) :] == ref:
                return True
    return False


def name_and_tag(top: Descriptor, ref: str | None) -> tuple[str | None, str | None]:
    """Repository and tag: from containerd's full name, a full ref name, or the ref alone."""
    ann = top.annotations or {}
    for full in (ann.get(CONTAINERD_NAME), ann.get(REF_NAME)):
        if full and "/" in full:
            return _split_reference(full)
    ref_name = ann.get(REF_NAME)
    return None, ref_name or ref


def _split_reference(full: str) -> tuple[str | None, str | None]:
    base = full.split("@", 1)[0]
    slash = base.rfind("/")
    colon = base.rfind(":")
    if colon > slash:
        return base[:colon], base[colon + 1 :]
    return base, None


def with_entry(
    doc: dict[str, Any], entry: dict[str, Any], ref: str | None, digest: str
) -> dict[str, Any]:
    """``index.json`` (``doc``) with ``entry`` appended, replacing the entry named ``ref``, or
    without a ref an unnamed entry for the same ``digest``."""
    kept = []
    for old in doc["manifests"]:
        ann = old.get("annotations") if isinstance(old, dict) else None
        name = ann.get(REF_NAME) if isinstance(ann, dict) else None
        if ref is not None and name == ref:
            continue  # replaced by the new entry
        if ref is None and name is None and isinstance(old, dict) and old.get("digest") == digest:
            continue  # the same unnamed image again
        kept.append(old)
    return {
        **doc,
        "manifests": [*kept, entry],
        "mediaType": doc.get("mediaType", MediaType.OCI_INDEX),
    }


@contextmanager
def exclusive_lock(root: str, name: str = LOCK_FILE) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``root/<name>`` (other processes wait for it)."""
    path = os.path.join(root, name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise OutputError(f"cannot open lock file {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
