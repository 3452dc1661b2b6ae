"""Background service processes: start with a log file and pid file, wait, stop cleanly.

Every lab service (registry, token server, podman, dockerd) is a ``Service``: a child process
started in its own session, its output appended to a log file, its pid written to a pid file.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``check`` until it returns True; raise TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if check():
                return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def kill_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` seconds, then SIGKILL. Ignores missing pids."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def pid_from_file(pidfile: Path, must_mention: str) -> int | None:
    """The pid in ``pidfile`` if that process is alive and its command line mentions ``must_mention``.

    The command-line check guards against killing an unrelated process that reused the pid.
    """
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    return pid if must_mention in cmdline and pid_alive(pid) else None


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root.resolve())
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below ``root`` (lazily if a plain umount fails)."""
    for point in mounts_under(root):
        done = subprocess.run(["umount", str(point)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def port_from_log(
    log: Path, pattern: str, timeout: float, proc: subprocess.Popen[bytes], offset: int = 0
) -> int:
    """Wait until ``log`` (from byte ``offset`` on) matches ``pattern`` (one group: the port)."""
    regex = re.compile(pattern.encode())
    found: list[int] = []

    def check() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{tail(log)}")
        with open(log, "rb") as f:
            f.seek(offset)
            match = regex.search(f.read())
        if match:
            found.append(int(match.group(1)))
        return bool(found)

    wait_until(check, timeout, f"a listening port in {log}")
    return found[0]


_LIVE: dict[int, Service] = {}


@atexit.register
def _stop_leftovers() -> None:
    """Safety net: stop services a test session forgot (or could not) stop."""
    for service in list(_LIVE.values()):
        service.stop()


@dataclass
class Service:
    """One background process started by the lab."""

    name: str
    proc: subprocess.Popen[bytes]
    log_file: Path
    pid_file: Path
    stop_timeout: float = 10.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, wait ``stop_timeout``, then SIGKILL. Safe to call twice."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(10)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        _LIVE.pop(self.proc.pid, None)


def start_service(
    name: str,
    cmd: Sequence[str],
    workdir: Path,
    env: Mapping[str, str] | None = None,
    stop_timeout: float = 10.0,
) -> Service:
    """Start ``cmd`` in its own session with output to ``workdir/NAME.log`` and pid in ``NAME.pid``."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = workdir / f"{name}.log"
    pid_file = workdir / f"{name}.pid"
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=full_env,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    service = Service(name, proc, log_file, pid_file, stop_timeout)
    _LIVE[proc.pid] = service
    return service
