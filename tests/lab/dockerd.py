"""dockerd (Debian docker.io 20.10) with private data/exec roots and no networking changes.

``--bridge=none --iptables=false --ip6tables=false --ip-masq=false --userland-proxy=false``:
no interface, no iptables rule, no TCP port. dockerd starts its own containerd (in its own
session, state under the exec root); stopping cleans that up too, and unmounts the data root
bind mount dockerd leaves behind when it is killed.
"""

from __future__ import annotations

from pathlib import Path

from .daemon import Daemon
from .procs import kill_pid, pid_from_file, start_service, tail, unmount_under, wait_until
from .tools import require


def _cleanup(workdir: Path) -> None:
    pid = pid_from_file(workdir / "exec" / "containerd" / "containerd.pid", str(workdir))
    if pid is not None:
        kill_pid(pid, timeout=10)
    unmount_under(workdir)


def start_dockerd(workdir: Path) -> Daemon:
    """Start dockerd on ``workdir/docker.sock`` (vfs storage, data in ``workdir/data``)."""
    dockerd = require("dockerd")
    require("containerd")
    require("runc")
    workdir = workdir.resolve()
    for sub in ("data", "exec", "cli"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    config = workdir / "daemon.json"
    config.write_text("{}\n")
    sock = workdir / "docker.sock"
    sock.unlink(missing_ok=True)
    cmd = [
        dockerd,
        "--config-file", str(config),
        "--data-root", str(workdir / "data"),
        "--exec-root", str(workdir / "exec"),
        "--pidfile", str(workdir / "exec" / "docker.pid"),
        "-H", f"unix://{sock}",
        "--storage-driver", "vfs",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--userland-proxy=false",
    ]  # fmt: skip
    env = {"DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(workdir / "cli")}
    service = start_service("dockerd", cmd, workdir, env=env, stop_timeout=20)
    daemon = Daemon("dockerd", sock, workdir, env, service)
    daemon.cleanups.append(lambda: _cleanup(workdir))
    try:
        wait_until(
            lambda: service.alive() and sock.exists() and daemon.ping(),
            40,
            "dockerd /_ping",
            interval=0.2,
        )
    except Exception as err:
        daemon.stop()
        raise RuntimeError(f"dockerd did not start: {err}\n{tail(service.log_file)}") from err
    except BaseException:
        daemon.stop()
        raise
    return daemon
