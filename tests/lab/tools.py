"""System tools for tests: find them (skip locally, fail in CI) and run them with clear failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

# Where Debian puts daemons that are not on a normal user's PATH.
_EXTRA_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def find(tool: str) -> str | None:
    """Absolute path of ``tool`` or None."""
    found = shutil.which(tool)
    if found:
        return found
    for directory in _EXTRA_DIRS:
        candidate = Path(directory) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require(tool: str) -> str:
    """Path of ``tool``; if it is missing, fail the test under ``CI=true`` and skip it otherwise."""
    found = find(tool)
    if found:
        return found
    message = f"system tool {tool!r} is not installed (run scripts/install-system-deps.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _clip(data: str | bytes | None, limit: int = 4000) -> str:
    if data is None:
        return ""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else "..." + text[-limit:]


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    text: bool = True,
    timeout: float | None = 300,
    **kw: Any,
) -> subprocess.CompletedProcess[Any]:
    """Run ``cmd`` with captured output; with ``check`` assert rc 0 and show stdout/stderr if not.

    Extra keyword arguments go to ``subprocess.run`` (``input``, ``env``, ``cwd``...). If a
    ``stdout``/``stderr`` is given it replaces the capture of that stream.
    """
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    argv = [os.fspath(c) for c in cmd]
    done = subprocess.run(argv, text=text, timeout=timeout, check=False, **kw)
    if check and done.returncode != 0:
        raise AssertionError(
            f"command failed with exit status {done.returncode}: {' '.join(argv)}\n"
            f"--- stdout ---\n{_clip(done.stdout)}\n--- stderr ---\n{_clip(done.stderr)}"
        )
    return done


def skopeo(*args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """``skopeo --insecure-policy ARGS`` (no host signature policy needed), output captured."""
    return run([require("skopeo"), "--insecure-policy", *args], check=check)


def umoci(*args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """``umoci ARGS``, output captured."""
    return run([require("umoci"), *args], check=check)


class OccystrapRunner(Protocol):
    """Type of the ``run_occystrap`` fixture."""

    def __call__(
        self,
        *args: str | os.PathLike[str],
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 600,
    ) -> subprocess.CompletedProcess[bytes]: ...


def run_occystrap(
    *args: str | os.PathLike[str],
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600,
) -> subprocess.CompletedProcess[bytes]:
    """``python -m occystrap ARGS`` with bytes stdout/stderr captured; never raises on rc != 0.

    ``env`` entries are added to (not substituted for) the current environment.
    """
    return subprocess.run(
        [sys.executable, "-m", "occystrap", *(os.fspath(a) for a in args)],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
