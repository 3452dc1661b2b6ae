"""The CLI's malloc settings (occystrap.cli.allocator): chunks freed by one thread are
reused instead of being faulted in again, and the CLI applies the settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

_WORKLOAD = """
import resource, sys, threading
from occystrap.cli import allocator
if sys.argv[1] == "tuned":
    assert allocator.tune()
def work():  # ~1 MiB chunks made and dropped in a thread, as the copy stages do
    keep = []
    for i in range(300):
        keep.append(b"x" * ((1 << 20) + i * 4096))
        if len(keep) > 3:
            keep.pop(0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = threading.Thread(target=work)
t.start()
t.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _WORKLOAD, mode], capture_output=True, check=True, text=True
    )
    return int(done.stdout)


def test_tuned_allocator_reuses_freed_chunks() -> None:
    plain, tuned = _faults("plain"), _faults("tuned")
    assert plain > 50_000  # 300 MB of chunks, each faulted in afresh
    assert tuned * 10 < plain, (plain, tuned)


def test_the_cli_tunes_the_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    from occystrap.cli import allocator, main

    calls: list[int] = []
    monkeypatch.setattr(allocator, "tune", lambda: calls.append(1) or True)
    with pytest.raises(SystemExit) as exit_:
        main.main(["--version"])
    assert exit_.value.code == 0 and calls == [1]
