"""Peak resident memory of a command, measured in a small fresh wrapper process.

Measuring from the pytest process itself is wrong: a child's ``ru_maxrss`` starts at the RSS
of the process it was forked (or vforked) from, so a child of a 300 MB pytest reports at least
300 MB. The wrapper here is a bare ``python -S`` (about 10 MB) that runs the command and reports
``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the peak of the command and the children it waited for.
It also times the command from its launch to its exit, which leaves out the wrapper's own
start-up (about 30 ms), and reports the CPU time (user + system) of the command and its
children.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_WRAPPER = r"""
import json, resource, subprocess, sys, time
spec = json.loads(sys.argv[1])
stdin = open(spec["stdin"], "rb") if spec["stdin"] else subprocess.DEVNULL
stdout = open(spec["stdout"], "wb") if spec["stdout"] else subprocess.DEVNULL
with open(spec["stderr"], "wb") as stderr:
    start = time.perf_counter()
    rc = subprocess.run(spec["cmd"], stdin=stdin, stdout=stdout, stderr=stderr).returncode
    seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(spec["result"], "w") as out:
    cpu = usage.ru_utime + usage.ru_stime
    json.dump({"rc": rc, "maxrss_kib": usage.ru_maxrss, "seconds": seconds, "cpu": cpu}, out)
"""


@dataclass(frozen=True)
class RssResult:
    returncode: int
    peak_rss: int  # bytes
    stderr: str
    seconds: float  # wall time of the command itself, from its launch to its exit
    cpu: float  # user + system CPU time of the command and the children it waited for


def measure(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    stdin: Path | None = None,
    stdout: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 900,
) -> RssResult:
    """Run ``cmd`` (stdin/stdout from/to files, else /dev/null) and report its peak RSS."""
    with tempfile.TemporaryDirectory(prefix="lab-rss-") as tmp:
        stderr_file, result_file = Path(tmp) / "stderr", Path(tmp) / "result.json"
        spec = {
            "cmd": [os.fspath(c) for c in cmd],
            "stdin": str(stdin) if stdin else None,
            "stdout": str(stdout) if stdout else None,
            "stderr": str(stderr_file),
            "result": str(result_file),
        }
        full_env = {**os.environ, **(env or {})}
        subprocess.run(
            [sys.executable, "-S", "-c", _WRAPPER, json.dumps(spec)],
            env=full_env,
            timeout=timeout,
            check=True,
        )
        result = json.loads(result_file.read_text())
        stderr = stderr_file.read_text(errors="replace")
    return RssResult(
        result["rc"],
        int(result["maxrss_kib"]) * 1024,
        stderr,
        float(result["seconds"]),
        float(result["cpu"]),
    )


def peak_rss(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    stdin: Path | None = None,
    stdout: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 900,
    check: bool = True,
) -> int:
    """Peak RSS in bytes of ``cmd``; with ``check``, assert it exited 0 (showing its stderr)."""
    result = measure(cmd, stdin=stdin, stdout=stdout, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"command failed with exit status {result.returncode}: "
            f"{' '.join(os.fspath(c) for c in cmd)}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result.peak_rss
