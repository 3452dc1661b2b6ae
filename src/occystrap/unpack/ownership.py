"""What the unpacking process may do: ownership, device nodes, xattrs (``ApplyOptions``).

A privileged unpack (real root, not inside a user namespace with a partial map) applies
every entry's uid/gid with ``lchown`` semantics and creates device nodes with ``mknod``.
A rootless unpack cannot, so it leaves files owned by the caller, skips device nodes,
and counts what it skipped so the caller can report it (``LayerStats``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum

_FULL_MAP = ("0", "0", "4294967295")


class DevicePolicy(StrEnum):
    """What to do with character and block device entries."""

    CREATE = "create"  # mknod when privileged; skipped (and counted) when rootless
    SKIP = "skip"  # never create; count them
    REFUSE = "refuse"  # raise UnsafeArchiveEntry


@dataclass(frozen=True, slots=True)
class OwnershipPolicy:
    """``privileged``: chown and mknod are allowed; otherwise both are skipped and counted."""

    privileged: bool

    @classmethod
    def detect(cls) -> OwnershipPolicy:
        """Privileged when running as uid 0 outside a user namespace with a partial map."""
        return cls(privileged=os.geteuid() == 0 and not in_user_namespace())

    @property
    def can_chown(self) -> bool:
        return self.privileged

    @property
    def can_mknod(self) -> bool:
        return self.privileged

    def needs_chown(self, uid: int, gid: int) -> bool:
        """Whether an entry owned by ``uid:gid`` differs from what we create files as."""
        return uid != os.geteuid() or gid != os.getegid()


PRIVILEGED = OwnershipPolicy(privileged=True)
ROOTLESS = OwnershipPolicy(privileged=False)


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    """How to apply layers; ``xattrs=False`` leaves extended attributes alone."""

    ownership: OwnershipPolicy = field(default_factory=OwnershipPolicy.detect)
    devices: DevicePolicy = DevicePolicy.CREATE
    xattrs: bool = True


def in_user_namespace() -> bool:
    """True when /proc/self/uid_map is not the identity map of the whole uid range."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as fh:
            lines = [line.split() for line in fh if line.strip()]
    except OSError:
        return False
    return not (len(lines) == 1 and tuple(lines[0]) == _FULL_MAP)
