"""Helpers of the reliability tests: run the CLI, kill it at a point, judge what it left.

``run_and_kill`` starts ``python -m occystrap …`` and sends SIGKILL as soon as a progress
measure (bytes at the proxy, bytes on disk) reaches a target. ``record`` appends one JSON
line per scenario to ``$OCCYSTRAP_RELIABILITY_LOG`` when that is set; that file is where the
figures in ``docs/reliability.md`` come from.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.ocilayout import LayoutInfo
from lab.registry import Registry

#: Seed and number of kill points per operation; raise the count for a longer run.
SEED = int(os.environ.get("OCCYSTRAP_KILL_SEED", "20261126"))
POINTS = int(os.environ.get("OCCYSTRAP_KILL_POINTS", "3"))


@dataclass(frozen=True)
class KillImage:
    """Four layers (busybox ~1 MB, 17 MiB and 34 MiB of random bytes, one tiny file), gzip.

    The two big layers are above the 16 MiB threshold of cross-run resume; the 34 MiB one is
    above the 32 MiB monolithic-PUT limit, so pushing it takes chunked PATCHes.
    """

    layout: LayoutInfo
    repo: str  # the image in registry_plain, tag v1
    manifest_digest: str  # as the registry serves it
    blobs: dict[str, int]  # layers and config: digest -> size

    @property
    def layer_sizes(self) -> dict[str, int]:
        return dict(zip(self.layout.layer_digests, self.layout.layer_sizes, strict=True))

    @property
    def total(self) -> int:
        return sum(self.blobs.values())


def kill_fractions(operation: str, points: int = POINTS, seed: int = SEED) -> list[float]:
    """``points`` seeded fractions of an operation's progress, one in each equal stratum."""
    rng = random.Random(f"{seed}/{operation}")
    return [round((i + rng.random()) / points, 4) for i in range(points)]


def occystrap_cmd(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "occystrap", *(os.fspath(a) for a in args)]


def isolated_env(tmp: Path) -> dict[str, str]:
    """Environment additions that keep auth files, caches and partial downloads under ``tmp``."""
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "DOCKER_CONFIG": str(tmp / "docker-config"),
        "XDG_RUNTIME_DIR": str(tmp / "run"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "REGISTRY_AUTH_FILE": str(tmp / "no-auth.json"),
        "OCCYSTRAP_TEMP_DIR": str(tmp / "spool"),
    }


def run(
    cmd: list[str], env: dict[str, str], timeout: float = 120, stdin: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` with ``env`` added, output captured; ``stdin`` is a file to read from."""
    (Path(env["OCCYSTRAP_TEMP_DIR"])).mkdir(parents=True, exist_ok=True)
    with open(stdin or os.devnull, "rb") as source:
        return subprocess.run(
            cmd,
            env={**os.environ, **env},
            stdin=source,
            capture_output=True,
            timeout=timeout,
            check=False,
        )


def ok(done: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr.decode(errors='replace')}"
    return done


def one_line_error(done: subprocess.CompletedProcess[bytes], status: int = 1) -> str:
    """The single ``occystrap: error: …`` line of a failed run (asserts there is nothing else)."""
    err = done.stderr.decode(errors="replace")
    assert done.returncode == status, f"exit {done.returncode}, expected {status}:\n{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("occystrap: error: "), err
    assert "Traceback" not in err
    return lines[0]


@dataclass
class Killed:
    """How a run ended: ``killed`` (SIGKILL sent while it ran) or exited by itself first."""

    killed: bool
    returncode: int
    progress: int  # the progress measure when the signal was sent (or at exit)
    seconds: float
    stderr: str


def run_and_kill(
    cmd: list[str],
    env: dict[str, str],
    progress: Callable[[], int],
    target: int,
    timeout: float = 120,
) -> Killed:
    """Run ``cmd``; SIGKILL it once ``progress()`` reaches ``target`` (polled every ~2 ms)."""
    Path(env["OCCYSTRAP_TEMP_DIR"]).mkdir(parents=True, exist_ok=True)
    err_file = Path(env["OCCYSTRAP_TEMP_DIR"]).parent / f"killed-{time.monotonic_ns()}.stderr"
    started = time.monotonic()
    with open(err_file, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        killed = False
        seen = 0
        try:
            while proc.poll() is None:
                seen = progress()
                if seen >= target:
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    break
                if time.monotonic() - started > timeout:
                    raise AssertionError(f"{cmd} ran for more than {timeout}s")
                time.sleep(0.002)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    text = err_file.read_text(errors="replace")
    err_file.unlink()
    if not killed:
        seen = progress()
    return Killed(killed, proc.returncode, seen, time.monotonic() - started, text)


def tree_bytes(*roots: Path) -> int:
    """Bytes of the regular files under ``roots`` (missing roots count 0)."""
    total = 0
    for root in roots:
        stack = [str(root)]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
    return total


def stale_files(*roots: Path) -> list[str]:
    """Temporary files and directories a killed run left (``.tmp-*``, ``*.tmp-*``, spool files,
    partial downloads) under ``roots``; the rerun does not sweep them."""
    found: set[str] = set()
    for root in roots:
        if root.is_dir():
            for pattern in ("**/.tmp-*", "**/*.tmp-*", "**/occystrap-spool-*", "**/*.partial"):
                found.update(str(p) for p in root.glob(pattern))
    return sorted(found)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def layout_blobs(layout: Path) -> dict[str, Path]:
    """``sha256:HEX`` -> path of every complete-named blob of an OCI layout."""
    root = layout / "blobs" / "sha256"
    if not root.is_dir():
        return {}
    return {f"sha256:{p.name}": p for p in root.iterdir() if not p.name.startswith(".")}


def assert_layout_blobs_intact(layout: Path) -> dict[str, int]:
    """Every named blob hashes to its name; returns ``digest -> inode`` for later comparison."""
    found = {}
    for digest, path in layout_blobs(layout).items():
        assert sha256_file(path) == digest, f"torn or corrupt blob {path}"
        found[digest] = path.stat().st_ino
    return found


def index_refs(layout: Path) -> dict[str, str]:
    """ref name -> manifest digest of an OCI layout's index.json ({} when there is none)."""
    path = layout / "index.json"
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    out = {}
    for entry in doc.get("manifests", []):
        name = (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        if name:
            out[name] = entry["digest"]
    return out


def record(kind: str, **fields: Any) -> None:
    """Append one result line to ``$OCCYSTRAP_RELIABILITY_LOG`` (no-op when unset)."""
    target = os.environ.get("OCCYSTRAP_RELIABILITY_LOG")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": kind, **fields}, sort_keys=True, default=str) + "\n")


MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


# -- asking the registry directly (not through the proxy) ------------------------------------------


def registry_status(reg: Registry, method: str, path: str) -> int:
    conn = http.client.HTTPConnection(reg.host, timeout=30)
    try:
        conn.request(method, path, headers={"Accept": MANIFEST_ACCEPT})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def has_tag(reg: Registry, repo: str, tag: str) -> bool:
    return registry_status(reg, "HEAD", f"/v2/{repo}/manifests/{tag}") == 200


def has_blob(reg: Registry, repo: str, digest: str) -> bool:
    return registry_status(reg, "HEAD", f"/v2/{repo}/blobs/{digest}") == 200
