"""Filesystem access confined to a root directory: the SecureJoin idea, done with dir fds.

Every path below the root is reached by opening one component at a time with
``os.open(component, O_DIRECTORY | O_NOFOLLOW, dir_fd=parent)``, so the kernel never
follows a symlink for us and a concurrent rename cannot redirect a walk already under way.

Symlinks met in *intermediate* components are resolved by us, inside the root, the way
the container will see them (like umoci's ``SecureJoinVFS``): an absolute target
restarts at the root, a relative one continues from the directory holding the link.
The one difference from SecureJoin is deliberate: where SecureJoin clamps a ``..`` that
would climb above the root, we refuse it with :class:`UnsafeArchiveEntry`. A layer whose
write has to pass through such a link is hostile, and silently redirecting it hides that.

The final component is never followed unless a caller asks for it (``resolve_file``,
used to read ``/etc/passwd``); extraction always creates, replaces or removes the final
name itself, never what a symlink there points at.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import MalformedInput, UnsafeArchiveEntry

MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# Called before a missing directory is created: (parent_fd, parent_parts, name).
MkdirHook = Callable[[int, tuple[str, ...], str], None]


def split_name(name: str) -> tuple[str, ...]:
    """Normalise an archive member name into path components below the root.

    ``./a//b/`` becomes ``("a", "b")`` and the root itself is ``()``. ``..`` is folded
    lexically (as umoci's ``CleanPath`` does); one that would climb above the root, an
    absolute name, or a NUL byte raises :class:`UnsafeArchiveEntry`.
    """
    if "\x00" in name:
        raise UnsafeArchiveEntry(name, "name contains a NUL byte")
    if name.startswith("/"):
        raise UnsafeArchiveEntry(name, "absolute path")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeArchiveEntry(name, "path climbs above the root")
            parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


@dataclass(slots=True)
class Parent:
    """An open directory inside the root and the final name to act on in it.

    ``fd`` belongs to the caller (close it). ``path`` is the directory's real location
    below the root, with every symlink already resolved; ``name`` is the final
    component ("" when the walk named the root itself).
    """

    fd: int
    name: str
    path: tuple[str, ...]
    created: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The real path of ``name`` below the root, joined with ``/``."""
        return "/".join((*self.path, self.name)) if self.name else "/".join(self.path)

    def close(self) -> None:
        os.close(self.fd)


class Missing(Exception):
    """A directory on the way does not exist and we were told not to create it."""


def open_parent(root_fd: int, relpath: str, create_dirs: bool = True) -> tuple[int, str]:
    """Open the directory that holds ``relpath``; return ``(dir_fd, basename)``.

    Missing directories are created (mode 0755) when ``create_dirs`` is true; otherwise
    :class:`MalformedInput` is raised. The caller closes ``dir_fd``.
    """
    try:
        parent = resolve_parent(root_fd, split_name(relpath), create_dirs=create_dirs)
    except Missing as exc:
        raise MalformedInput(f"{relpath!r}: a parent directory does not exist") from exc
    return parent.fd, parent.name


def resolve_parent(
    root_fd: int,
    parts: Sequence[str],
    *,
    create_dirs: bool,
    on_mkdir: MkdirHook | None = None,
    label: str | None = None,
) -> Parent:
    """Walk to the directory holding ``parts[-1]`` (or to the root when ``parts`` is empty).

    Raises :class:`Missing` when a directory is absent (or is something else) and
    ``create_dirs`` is false, :class:`UnsafeArchiveEntry` when a symlink on the way climbs
    above the root, and :class:`MalformedInput` when ``create_dirs`` is true and a
    component is neither a directory nor a symlink.
    """
    shown = label if label is not None else "/".join(parts)
    if not parts:
        return Parent(os.dup(root_fd), "", ())
    walker = _Walker(root_fd, shown, create_dirs, on_mkdir)
    try:
        walker.walk(deque(parts[:-1]))
    except BaseException:
        os.close(walker.fd)
        raise
    return Parent(walker.fd, parts[-1], tuple(walker.stack), walker.created)


def resolve_file(root_fd: int, parts: Sequence[str], *, label: str | None = None) -> Parent:
    """Like :func:`resolve_parent`, but also follow symlinks in the final component.

    The returned ``name`` is not a symlink (it may not exist). Used to read files such
    as ``/etc/passwd`` the way the container would see them, never outside the root.
    """
    shown = label if label is not None else "/".join(parts)
    budget = MAX_SYMLINKS
    current = list(parts)
    while True:
        parent = resolve_parent(root_fd, current, create_dirs=False, label=shown)
        try:
            st = os.stat(parent.name, dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            return parent
        except BaseException:
            parent.close()
            raise
        if not stat.S_ISLNK(st.st_mode):
            return parent
        try:
            target = os.readlink(parent.name, dir_fd=parent.fd)
        finally:
            parent.close()
        budget -= 1
        if budget < 0:
            raise MalformedInput(f"{shown!r}: too many levels of symbolic links")
        base = [] if target.startswith("/") else list(parent.path)
        current = _fold(base, target.split("/"), shown)
        if not current:
            raise MalformedInput(f"{shown!r}: resolves to the root directory")


def _fold(base: list[str], more: Sequence[str], shown: str) -> list[str]:
    out = list(base)
    for part in more:
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise UnsafeArchiveEntry(shown, "a symlink on the path climbs above the root")
            out.pop()
        else:
            out.append(part)
    return out


class _Walker:
    """One component-at-a-time walk; ``fd`` is always the directory ``stack`` names."""

    def __init__(
        self, root_fd: int, shown: str, create_dirs: bool, on_mkdir: MkdirHook | None
    ) -> None:
        self.root_fd = root_fd
        self.shown = shown
        self.create_dirs = create_dirs
        self.on_mkdir = on_mkdir
        self.fd = os.dup(root_fd)
        self.stack: list[str] = []
        self.created: list[tuple[str, ...]] = []
        self.links = 0

    def walk(self, pending: deque[str]) -> None:
        while pending:
            part = pending.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not self.stack:
                    raise UnsafeArchiveEntry(
                        self.shown, "a symlink on the path climbs above the root"
                    )
                self.stack.pop()
                self._reopen()
                continue
            target = self._step(part)
            if target is None:
                continue
            self.links += 1
            if self.links > MAX_SYMLINKS:
                raise MalformedInput(f"{self.shown!r}: too many levels of symbolic links")
            if not target:
                raise MalformedInput(f"{self.shown!r}: a symlink on the path is empty")
            if target.startswith("/"):
                self.stack.clear()
                self._reopen()
            pending.extendleft(reversed(target.split("/")))

    def _step(self, part: str) -> str | None:
        """Descend into ``part``; return a symlink's target instead when it is one."""
        try:
            fd = os.open(part, _DIR_FLAGS, dir_fd=self.fd)
        except FileNotFoundError:
            if not self.create_dirs:
                raise Missing("/".join((*self.stack, part))) from None
            if self.on_mkdir is not None:
                self.on_mkdir(self.fd, tuple(self.stack), part)
            os.mkdir(part, 0o755, dir_fd=self.fd)
            fd = os.open(part, _DIR_FLAGS, dir_fd=self.fd)
            os.chmod(fd, 0o755)
            self.created.append((*self.stack, part))
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.stat(part, dir_fd=self.fd, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                if not self.create_dirs:  # looking, not writing: there is no such directory
                    raise Missing("/".join((*self.stack, part))) from None
                where = "/".join((*self.stack, part))
                raise MalformedInput(
                    f"{self.shown!r}: {where!r} is in the way and is not a directory"
                ) from None
            return os.readlink(part, dir_fd=self.fd)
        os.close(self.fd)
        self.fd = fd
        self.stack.append(part)
        return None

    def _reopen(self) -> None:
        """Reopen ``stack`` from the root (after ``..`` or an absolute symlink)."""
        os.close(self.fd)
        self.fd = os.dup(self.root_fd)
        for part in self.stack:
            fd = os.open(part, _DIR_FLAGS, dir_fd=self.fd)
            os.close(self.fd)
            self.fd = fd
