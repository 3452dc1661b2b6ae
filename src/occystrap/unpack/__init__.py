"""Unpacking images: apply layers to a directory safely, and build an OCI runtime config.

* :func:`apply_layer` / :func:`apply_layers`: OCI layer changesets applied under a root
  via :mod:`.safepath` (:mod:`.apply`; whiteouts and opaque directories in
  :mod:`.whiteouts`, owner/mode/xattrs/times in :mod:`.metadata`, per-layer bookkeeping
  and deferred directory fix-ups in :mod:`.state`, counts in :mod:`.stats`).
* :class:`ApplyOptions`, :class:`OwnershipPolicy`, :class:`DevicePolicy`: privileged vs
  rootless behaviour.
* :func:`build_runtime_config`: image config -> runtime-spec ``config.json``.
* :func:`resolve_user`: an image ``User`` against the rootfs' /etc/passwd and /etc/group.
"""

from .apply import apply_layer, apply_layers
from .ownership import PRIVILEGED, ROOTLESS, ApplyOptions, DevicePolicy, OwnershipPolicy
from .runtime_spec import build_runtime_config
from .stats import LayerStats
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
