"""Resolve an image config ``User`` against the image's own /etc/passwd and /etc/group.

Follows image-spec conversion.md and runc's libcontainer semantics:

* ``""``: root, ``0:0``, no lookup.
* Numeric user and/or group values are copied verbatim; the files are not needed. A
  numeric user without a group takes the primary gid from a passwd entry with that uid
  when one exists, else 0.
* A user name must exist in /etc/passwd and a group name in /etc/group; otherwise it is
  an error (conversion.md: "MUST return an error").
* ``additional_gids`` (the groups that list the user as a member) are filled only for a
  user *name* given without a group, as conversion.md asks.

The files are read through :mod:`safepath`: a symlinked /etc/passwd is followed the way
the container would see it, and one that climbs out of the rootfs is refused.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ..errors import LimitExceeded, MalformedInput
from .safepath import Missing, resolve_file

MAX_FILE_BYTES = 16 << 20
MAX_ID = (1 << 32) - 2  # (uid_t)-1 is "no change" to the kernel


@dataclass(frozen=True, slots=True)
class ResolvedUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str | None = None  # from the passwd entry, when one matched


@dataclass(frozen=True, slots=True)
class _Passwd:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True, slots=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def resolve_user(spec: str, rootfs: str) -> ResolvedUser:
    """Turn ``user[:group]`` into numeric ids, reading the rootfs only when names need it."""
    user, _, group = spec.partition(":")
    if not user and not group:
        return ResolvedUser(0, 0, (), _home_of(0, rootfs))
    uid_value, gid_value = _numeric(user, spec), _numeric(group, spec)

    entry: _Passwd | None = None
    if not user:
        uid = 0
    elif uid_value is not None:
        uid = uid_value
        if gid_value is None:  # only the primary gid is needed from the file
            entry = next((p for p in _passwd(rootfs, required=False) if p.uid == uid), None)
    else:
        entry = next((p for p in _passwd(rootfs, required=True) if p.name == user), None)
        if entry is None:
            raise MalformedInput(f"user {user!r} not found in the image's /etc/passwd")
        uid = entry.uid

    if gid_value is not None:
        return ResolvedUser(uid, gid_value, (), entry.home if entry else _home_of(uid, rootfs))
    if group:
        found = next((g for g in _groups(rootfs, required=True) if g.name == group), None)
        if found is None:
            raise MalformedInput(f"group {group!r} not found in the image's /etc/group")
        return ResolvedUser(uid, found.gid, (), entry.home if entry else _home_of(uid, rootfs))
    if entry is None:
        return ResolvedUser(uid, 0, (), None)
    if uid_value is not None:  # numeric user: conversion.md says leave additionalGids alone
        return ResolvedUser(uid, entry.gid, (), entry.home)
    extra = tuple(
        dict.fromkeys(g.gid for g in _groups(rootfs, required=False) if entry.name in g.members)
    )
    return ResolvedUser(uid, entry.gid, extra, entry.home)


def _home_of(uid: int, rootfs: str) -> str | None:
    """The home directory of the first passwd entry for ``uid``, as runc would pick it."""
    entry = next((p for p in _passwd(rootfs, required=False) if p.uid == uid), None)
    return entry.home if entry and entry.home else None


def _numeric(text: str, spec: str) -> int | None:
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    if value > MAX_ID:
        raise MalformedInput(f"user {spec!r}: id {value} is out of range")
    return value


def _passwd(rootfs: str, *, required: bool) -> list[_Passwd]:
    out = []
    for fields in _records(rootfs, "passwd", required):
        if len(fields) >= 4 and (ids := _ids(fields[2], fields[3])) is not None:
            home = fields[5] if len(fields) > 5 else ""
            out.append(_Passwd(fields[0], ids[0], ids[1], home))
    return out


def _groups(rootfs: str, *, required: bool) -> list[_Group]:
    out = []
    for fields in _records(rootfs, "group", required):
        if len(fields) >= 3 and (ids := _ids(fields[2], fields[2])) is not None:
            members = fields[3].split(",") if len(fields) > 3 and fields[3] else []
            out.append(_Group(fields[0], ids[0], tuple(m.strip() for m in members)))
    return out


def _ids(a: str, b: str) -> tuple[int, int] | None:
    a, b = a.strip(), b.strip()
    if a.isascii() and a.isdigit() and b.isascii() and b.isdigit():
        return int(a), int(b)
    return None


def _records(rootfs: str, name: str, required: bool) -> list[list[str]]:
    data = read_rootfs_file(rootfs, ("etc", name))
    if data is None:
        if required:
            raise MalformedInput(f"the image has no /etc/{name} to resolve its config User")
        return []
    out = []
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "+", "-")):
            out.append(line.split(":"))
    return out


def read_rootfs_file(rootfs: str, parts: tuple[str, ...]) -> bytes | None:
    """Read a small regular file inside ``rootfs`` safely; None when it does not exist."""
    shown = "/" + "/".join(parts)
    try:
        root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise MalformedInput(f"cannot open rootfs {rootfs!r}: {exc.strerror}") from None
    try:
        try:
            parent = resolve_file(root_fd, parts, label=shown)
        except Missing:
            return None
        except OSError as exc:
            raise MalformedInput(f"cannot read {shown} in the image: {exc.strerror}") from None
        try:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(parent.name, flags, dir_fd=parent.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise MalformedInput(f"cannot read {shown} in the image: {exc.strerror}") from None
        finally:
            parent.close()
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise MalformedInput(f"{shown} in the image is not a regular file")
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise LimitExceeded(f"{shown} in the image is larger than {MAX_FILE_BYTES} bytes")
        return data
    finally:
        os.close(root_fd)
