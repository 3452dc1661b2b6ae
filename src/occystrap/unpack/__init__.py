"""Unpacking images: apply layers to a directory safely, and build an OCI runtime config.

* :func:`apply_layer` / :func:`apply_layers`: OCI layer changesets (whiteouts, opaque
  directories, hardlinks, devices, xattrs) applied under a root via :mod:`.safepath`.
* :class:`OwnershipPolicy`, :class:`DevicePolicy`: privileged vs rootless behaviour.
* :func:`build_runtime_config`: image config -> runtime-spec ``config.json``.
* :func:`resolve_user`: an image ``User`` against the rootfs' /etc/passwd and /etc/group.
"""

from .apply import ApplyOptions, LayerStats, apply_layer, apply_layers
from .ownership import PRIVILEGED, ROOTLESS, DevicePolicy, OwnershipPolicy
from .runtime_spec import build_runtime_config
from .users import ResolvedUser, resolve_user

__all__ = [
    "PRIVILEGED",
    "ROOTLESS",
    "ApplyOptions",
    "DevicePolicy",
    "LayerStats",
    "OwnershipPolicy",
    "ResolvedUser",
    "apply_layer",
    "apply_layers",
    "build_runtime_config",
    "resolve_user",
]
