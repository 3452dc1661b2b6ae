"""Run many ``occystrap`` command lines as separate processes without paying start-up each time.

Interpreter start-up and imports cost about 0.25 s of CPU per run, and the hostile corpus
makes hundreds of runs. :class:`ForkServer` starts one single-threaded Python process that
imports the CLI once and then forks one child per request. Each child is a real, separate
process, exactly like ``python -m occystrap ARGS``: its own working directory, stdin, stdout
and stderr (files), exit status, and a hard timeout (SIGKILL, reported as -9). The server
is single-threaded, so forking it is safe; the test process only talks to it over pipes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

SERVER = r"""
import io, json, os, selectors, signal, sys, time
import occystrap.cli.main as cli

requests = os.fdopen(0, "rb", buffering=0)
replies = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
running = {}  # pid -> (id, deadline)


def child(req):
    os.chdir(req["cwd"])
    for fd, path, flags in (
        (0, req["stdin"] or os.devnull, os.O_RDONLY),
        (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)))
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)), line_buffering=True
    )
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 0
    try:
        cli.main(req["argv"])
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status)


selector = selectors.DefaultSelector()
selector.register(requests, selectors.EVENT_READ)
pending = b""
open_input = True
while open_input or running:
    if open_input and selector.select(timeout=0.02):
        data = requests.read(65536)
        if not data:
            open_input = False
            selector.unregister(requests)
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                selector.close()
                child(req)
            running[pid] = (req["id"], time.monotonic() + req["timeout"])
    elif not open_input:
        time.sleep(0.02)
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        rid, _ = running.pop(pid)
        replies.write(json.dumps({"id": rid, "status": os.waitstatus_to_exitcode(status)}) + "\n")
    now = time.monotonic()
    for pid, (rid, deadline) in list(running.items()):
        if now > deadline:
            os.kill(pid, signal.SIGKILL)
"""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes


class ForkServer:
    """``run(argv, cwd, stdin)`` from any thread; ``close()`` when done."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._lock = threading.Lock()
        self._waiting: dict[int, Future[int]] = {}
        self._next = 0
        self._reader = threading.Thread(target=self._read_replies, daemon=True)
        self._reader.start()

    def run(self, argv: list[str], cwd: Path, stdin: Path | None, timeout: float) -> Result:
        """``argv`` without the program name, as for ``occystrap.cli.main.main``."""
        future: Future[int] = Future()
        with self._lock:
            self._next += 1
            rid = self._next
            self._waiting[rid] = future
            out, err = cwd.parent / f".{cwd.name}.stdout", cwd.parent / f".{cwd.name}.stderr"
            request: dict[str, Any] = {
                "id": rid,
                "argv": argv,
                "cwd": str(cwd),
                "stdin": str(stdin) if stdin else None,
                "stdout": str(out),
                "stderr": str(err),
                "timeout": timeout,
            }
            pipe: IO[bytes] | None = self._proc.stdin
            assert pipe is not None
            pipe.write(json.dumps(request).encode() + b"\n")
            pipe.flush()
        status = future.result(timeout=timeout + 30)
        try:
            return Result(status, out.read_bytes(), err.read_bytes())
        finally:
            out.unlink(missing_ok=True)
            err.unlink(missing_ok=True)

    def _read_replies(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            reply = json.loads(line)
            with self._lock:
                future = self._waiting.pop(reply["id"])
            future.set_result(int(reply["status"]))
        with self._lock:  # the server died: nobody is coming back
            for future in self._waiting.values():
                future.set_exception(RuntimeError("the fork server exited"))
            self._waiting.clear()

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
        self._reader.join(timeout=10)
