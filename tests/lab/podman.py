"""``podman system service`` as a Docker-compatible daemon with a private store.

Private registries.conf/storage.conf/containers.conf under the work dir: vfs storage, runtime
runc (crun fails on this host's hybrid cgroups), cgroupfs, file events, netns=host (so podman
never creates a CNI bridge or iptables rules) and default ulimits of 1024 (the host's hard
nofile limit is below podman's root defaults).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .daemon import Daemon
from .procs import start_service, tail, unmount_under, wait_until
from .tools import require, run

# Loopback registries are plain HTTP in the lab; podman must be told so per registry prefix.
DEFAULT_INSECURE = ("127.0.0.1", "localhost")


def _registries_conf(insecure: Sequence[str]) -> str:
    text = 'unqualified-search-registries = ["docker.io"]\n'
    for location in dict.fromkeys([*insecure, *DEFAULT_INSECURE]):
        text += f'\n[[registry]]\nlocation = "{location}"\ninsecure = true\n'
    return text


def _containers_conf(workdir: Path) -> str:
    return f"""[containers]
netns = "host"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[network]
network_config_dir = "{workdir / "net"}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{workdir / "events.log"}"
runtime = "runc"
tmp_dir = "{workdir / "tmp"}"
image_copy_tmp_dir = "{workdir / "tmp"}"
"""


def write_config(workdir: Path, insecure_registries: Sequence[str] = ()) -> dict[str, str]:
    """Write the three config files under ``workdir``; return the env that selects them."""
    for sub in ("storage", "run", "tmp", "net"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    (workdir / "registries.conf").write_text(_registries_conf(insecure_registries))
    (workdir / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{workdir / "storage"}"\n'
        f'runroot = "{workdir / "run"}"\n'
    )
    (workdir / "containers.conf").write_text(_containers_conf(workdir))
    auth = workdir / "auth.json"
    if not auth.exists():
        auth.write_text('{"auths": {}}\n')
    return {
        "CONTAINERS_REGISTRIES_CONF": str(workdir / "registries.conf"),
        "CONTAINERS_STORAGE_CONF": str(workdir / "storage.conf"),
        "CONTAINERS_CONF": str(workdir / "containers.conf"),
        "REGISTRY_AUTH_FILE": str(workdir / "auth.json"),
        "TMPDIR": str(workdir / "tmp"),
    }


def start_podman(workdir: Path, insecure_registries: Sequence[str] = ()) -> Daemon:
    """Start ``podman system service`` on ``workdir/podman.sock``.

    ``insecure_registries`` are extra ``host:port`` prefixes to reach over plain HTTP
    (127.0.0.1 and localhost are always insecure). ``daemon.env`` also points the podman CLI
    at the same store and ``DOCKER_HOST`` at the socket.
    """
    podman = require("podman")
    require("runc")
    workdir = workdir.resolve()
    env = write_config(workdir, insecure_registries)
    sock = workdir / "podman.sock"
    sock.unlink(missing_ok=True)
    env["DOCKER_HOST"] = f"unix://{sock}"
    cmd = [podman, "--log-level=info", "system", "service", "--time=0", f"unix://{sock}"]
    service = start_service("podman", cmd, workdir, env=env, stop_timeout=15)
    daemon = Daemon("podman", sock, workdir, env, service)
    daemon.cleanups.append(lambda: unmount_under(workdir))
    try:
        wait_until(lambda: service.alive() and sock.exists() and daemon.ping(), 20, "podman /_ping")
    except Exception as err:
        daemon.stop()
        raise RuntimeError(
            f"podman service did not start: {err}\n{tail(service.log_file)}"
        ) from err
    except BaseException:
        daemon.stop()
        raise
    return daemon


def podman_cli(daemon: Daemon, *args: str) -> str:
    """Run the podman CLI against the daemon's store (not through the socket); return stdout."""
    out: str = run([require("podman"), *args], env={**os.environ, **daemon.env}).stdout
    return out
