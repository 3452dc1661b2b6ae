"""A sink driven by hand in a child process, to be killed or interrupted mid-layer.

Each test's script defines ``root``, ``mode`` and ``sink``, then appends
:data:`STALLING_LAYER`: the sink takes 64 KiB of a layer, and then the child either
SIGKILLs itself (``mode`` "kill") or says "ready" and waits for a line on stdin before
aborting the sink (any other mode, a live writer).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STALLING_LAYER = """
class Blob:
    size = 0
    def __init__(self):
        self.calls = 0
    def read(self, n=-1):
        self.calls += 1
        if self.calls == 1:
            return b"x" * 65536
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        print("ready", flush=True)
        sys.stdin.readline()
        raise KeyboardInterrupt  # the run is interrupted: abort

try:
    sink.put_layer(Blob(), LayerWrite(0, "application/vnd.oci.image.layer.v1.tar", None, None, None, None))
except KeyboardInterrupt:
    sink.abort()
"""


def start_writer(script: str, root: Path, mode: str) -> subprocess.Popen[bytes]:
    """Run ``script`` (which ends with :data:`STALLING_LAYER`) on ``root`` in ``mode``."""
    return subprocess.Popen(
        [sys.executable, "-c", script, str(root), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
