"""The CLI's bigger HTTP socket reads (occystrap.cli.httpreads): httpx hands up bigger
pieces once applied, and the CLI applies them only when a transport talks HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from occystrap.cli import httpreads

# Serves 8 MiB on loopback and prints the largest piece httpx's iter_raw handed up.
_PROBE = """
import http.server, sys, threading
import httpx
from occystrap.cli import httpreads
if sys.argv[1] == "tuned":
    assert httpreads.tune()
body = b"x" * (8 << 20)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
sizes = []
with httpx.Client() as client:
    with client.stream("GET", f"http://127.0.0.1:{server.server_address[1]}/") as response:
        for piece in response.iter_raw():
            sizes.append(len(piece))
assert sum(sizes) == len(body)
print(max(sizes))
"""


def _largest_read(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, check=True, text=True
    )
    return int(done.stdout)


def test_tuned_reads_hand_up_bigger_pieces() -> None:
    assert _largest_read("plain") <= 64 << 10
    assert 64 << 10 < _largest_read("tuned") <= httpreads.READ_SIZE


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["process", "registry://r.example/a:1", "tar://o.tar"], True),
        (["-q", "process", "tar://i.tar", "REGISTRY://r.example/a:1"], True),
        (["process", "docker://busybox", "dir://out"], True),
        (["process", "tar://i.tar", "ocidir://out:v1", "-f", "normalize-timestamps"], False),
        (["process", "registry", "tar://o.tar"], False),
        (["--version"], False),
    ],
)
def test_only_http_transports_want_the_reads(args: list[str], expected: bool) -> None:
    assert httpreads.wanted(args) is expected


def test_the_cli_applies_the_reads_only_when_wanted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from occystrap.cli import main

    calls: list[int] = []
    monkeypatch.setattr(httpreads, "tune", lambda: calls.append(1) or True)
    for args, expected in [
        (["process", "tar:///nonexistent/i.tar", f"tar://{tmp_path}/o.tar"], []),
        (
            ["process", "registry://127.0.0.1:1/a:b?no_such_option=1", f"tar://{tmp_path}/o.tar"],
            [1],
        ),
    ]:
        calls.clear()
        with pytest.raises(SystemExit) as exit_:
            main.main(args)
        assert exit_.value.code != 0 and calls == expected
