"""Issue 7 audit: a registry that never answers fails in bounded time from the CLI too.

docs/reliability.md noted that only the library could set the registry timeout (60 s fixed on
the CLI, so about 6 minutes with the default retries). ``--timeout SECONDS`` (env
``OCCYSTRAP_TIMEOUT``) now reaches ``RegistrySettings.timeout``. The "registry" here is a
loopback socket that accepts connections and reads requests but never answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.loopback import accept_each
from lab.tools import OccystrapRunner


@pytest.fixture
def silent_registry() -> Iterator[str]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    accept_each(server, held.append)  # read nothing, answer nothing
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_timeout_bounds_a_silent_registry(
    silent_registry: str, run_occystrap: OccystrapRunner, tmp_path: Path, how: str
) -> None:
    flags = ["--timeout", "0.5"] if how == "flag" else []
    env = {"OCCYSTRAP_TIMEOUT": "0.5"} if how == "env" else None
    started = time.monotonic()
    done = run_occystrap(
        *flags, "--retries", "1", "--insecure", "process",
        f"registry://{silent_registry}/audit/silent:v1", f"tar://{tmp_path / 'x.tar'}",
        env=env, timeout=120,
    )  # fmt: skip
    took = time.monotonic() - started
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("occystrap: error: "), err
    assert "timed out" in err.lower() or "timeout" in err.lower(), err
    assert took < 20, f"{took:.1f}s with a 0.5 s timeout and 1 retry"
    assert not (tmp_path / "x.tar").exists()


def test_bad_timeout_is_a_usage_error(run_occystrap: OccystrapRunner) -> None:
    for value in ("0", "-1", "soon"):
        done = run_occystrap("--timeout", value, "info", "ocidir:///nonexistent")
        assert done.returncode == 2, done.stderr.decode()
        assert done.stderr.decode().count("\n") == 1
