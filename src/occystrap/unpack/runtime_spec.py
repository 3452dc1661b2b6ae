"""Build an OCI runtime ``config.json`` from an image config (image-spec conversion.md).

The generated skeleton is what ``runc spec`` (runc 1.1.5) writes, with two deliberate
differences: ``process.capabilities`` has no ``ambient`` set (runc's default lists
ambient capabilities that are neither permitted-and-inheritable, which runtime-tools'
validator rejects), and ``root.readonly`` is false by default, since an image's
processes expect a writable root. ``rootless=True`` applies what ``runc spec --rootless``
does: a user namespace mapping the caller's euid/egid to 0, no network namespace, /sys
bind-mounted, ``uid=``/``gid=`` mount options dropped, no cgroup resources. Only uid and
gid 0 are mapped then, so an image ``User`` other than root will not start rootless.

From the image config:

* ``process.args`` = Entrypoint + Cmd (an error when both are empty, unless ``args``
  overrides them); ``process.cwd`` = WorkingDir verbatim (a relative one is taken from
  ``/``), or ``/``.
* ``process.env`` = Env verbatim. A default ``PATH`` is added only when Env has none
  (runc does not supply one and ``execve`` of a bare name would fail), ``HOME`` from the
  user's passwd entry (or ``/``) when absent, and ``TERM=xterm`` with a terminal. No
  variable named in Env is ever changed.
* ``process.user`` is resolved with :mod:`users` against the rootfs.
* Annotations: ``org.opencontainers.image.{os,architecture,variant,os.version,os.features,
  author,created,stopSignal,exposedPorts}`` are generated and Labels override them.
* ``Volumes`` are ignored unless ``volumes_as_tmpfs`` is set, which mounts an empty
  tmpfs at each (the image's content there is then hidden, as a fresh volume would be).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import MalformedInput
from .users import resolve_user

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
_ANNOTATION = "org.opencontainers.image."


def build_runtime_config(
    image_config: Mapping[str, Any],
    rootfs: str,
    *,
    rootless: bool = False,
    terminal: bool = False,
    hostname: str = "occystrap",
    args: Sequence[str] | None = None,
    root_path: str | None = None,
    readonly_root: bool = False,
    volumes_as_tmpfs: bool = False,
) -> dict[str, Any]:
    """Return the runtime config for ``rootfs`` (``root.path`` defaults to its basename,
    i.e. ``config.json`` is expected in the rootfs' parent directory, the bundle)."""
    config = _section(image_config, "config")
    argv = (
        list(args) if args is not None else _strings(config, "Entrypoint") + _strings(config, "Cmd")
    )
    if not argv:
        raise MalformedInput("the image config has neither Entrypoint nor Cmd; nothing to run")
    user = resolve_user(_string(config, "User"), rootfs)
    env = _strings(config, "Env")
    names = {item.partition("=")[0] for item in env}
    if "PATH" not in names:
        env.append(DEFAULT_PATH)
    if "HOME" not in names:
        env.append(f"HOME={user.home or '/'}")
    if terminal and "TERM" not in names:
        env.append("TERM=xterm")
    cwd = _string(config, "WorkingDir") or "/"
    process_user: dict[str, Any] = {"uid": user.uid, "gid": user.gid}
    if user.additional_gids:
        process_user["additionalGids"] = list(user.additional_gids)

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": process_user,
            "args": argv,
            "env": env,
            "cwd": cwd if cwd.startswith("/") else posixpath.normpath("/" + cwd),
            "capabilities": {
                kind: list(CAPABILITIES) for kind in ("bounding", "effective", "permitted")
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {
            "path": root_path or os.path.basename(os.path.normpath(rootfs)),
            "readonly": readonly_root,
        },
        "hostname": hostname,
        "mounts": _mounts(rootless),
        "linux": _linux(rootless),
    }
    if volumes_as_tmpfs:
        for volume in sorted(_section(config, "Volumes")):
            spec["mounts"].append(
                {
                    "destination": posixpath.normpath(posixpath.join("/", volume)),
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=755"],
                }
            )
    annotations = _annotations(image_config, config)
    if annotations:
        spec["annotations"] = annotations
    return spec


def _annotations(image: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for field, key in (
        ("os", "os"),
        ("architecture", "architecture"),
        ("variant", "variant"),
        ("os.version", "os.version"),
        ("author", "author"),
        ("created", "created"),
    ):
        value = image.get(field)
        if isinstance(value, str) and value:
            out[_ANNOTATION + key] = value
    features = image.get("os.features")
    if isinstance(features, list) and features:
        out[_ANNOTATION + "os.features"] = ",".join(str(x) for x in features)
    signal = config.get("StopSignal")
    if isinstance(signal, str) and signal:
        out[_ANNOTATION + "stopSignal"] = signal
    ports = _section(config, "ExposedPorts")
    if ports:
        out[_ANNOTATION + "exposedPorts"] = ",".join(ports)
    labels = _section(config, "Labels")
    for key, value in labels.items():
        if not isinstance(value, str):
            raise MalformedInput(f"image config label {key!r} is not a string")
        out[key] = value  # labels take precedence over the generated annotations
    return out


def _mounts(rootless: bool) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ),  # fmt: skip
        _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
    ]
    if not rootless:
        return mounts
    out = []
    for mount in mounts:
        if mount["destination"] == "/sys":
            out.append(_mount("/sys", "none", "/sys", "rbind", "nosuid", "noexec", "nodev", "ro"))
            continue
        if "options" in mount:
            mount["options"] = [o for o in mount["options"] if not o.startswith(("uid=", "gid="))]
        out.append(mount)
    return out


def _mount(destination: str, kind: str, source: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": kind, "source": source, "options": list(options)}


def _linux(rootless: bool) -> dict[str, Any]:
    linux: dict[str, Any] = {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if rootless:
        del linux["resources"]
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
        linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]
    return linux


def _section(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = mapping.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedInput(f"image config field {key!r} is not an object")
    return value


def _strings(config: Mapping[str, Any], key: str) -> list[str]:
    value = config.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise MalformedInput(f"image config field {key!r} is not a list of strings")
    return list(value)


def _string(config: Mapping[str, Any], key: str) -> str:
    value = config.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedInput(f"image config field {key!r} is not a string")
    return value
