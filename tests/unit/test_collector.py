"""The CLI's garbage-collector settings (occystrap.cli.collector): fewer young collections,
cycles still collected, and the interpreter's final pass skipped at exit."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, text=True, timeout=60
    )
    return done.stdout


def test_tune_raises_the_young_threshold_and_freezes_at_exit() -> None:
    out = _python(
        "import atexit, gc\n"
        # Registered first, so it runs after the collector's own exit hook (LIFO).
        "atexit.register(lambda: print('frozen', gc.get_freeze_count()))\n"
        "from occystrap.cli import collector\n"
        "print('before', gc.get_threshold()[0])\n"
        "collector.tune()\n"
        "collector.tune()\n"  # a second call registers nothing more
        "print('after', gc.get_threshold()[0], gc.get_freeze_count())\n"
    )
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert int(lines["before"]) < 50_000
    threshold, frozen_during_run = map(int, lines["after"].split())
    assert threshold == 50_000 and frozen_during_run == 0
    assert int(lines["frozen"]) > 1_000  # everything alive at exit, frozen once


def test_cycles_are_still_collected_after_tuning() -> None:
    out = _python(
        "import gc\n"
        "from occystrap.cli import collector\n"
        "collector.tune()\n"
        "class Node:\n"
        "    def __init__(self): self.me = self\n"
        "base = len(gc.get_objects())\n"
        "peak = 0\n"
        "for i in range(400_000):\n"
        "    Node()\n"
        "    if i % 10_000 == 0: peak = max(peak, len(gc.get_objects()) - base)\n"
        "print(gc.get_stats()[0]['collected'], peak)\n"
    )
    collected, peak = map(int, out.split())
    assert collected > 300_000  # the cycles were found and freed ...
    assert peak < 150_000  # ... in batches, never all of them at once


def test_the_cli_tunes_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    from occystrap.cli import collector, main

    calls: list[int] = []
    monkeypatch.setattr(collector, "tune", lambda: calls.append(1))
    with pytest.raises(SystemExit) as exit_:
        main.main(["--version"])
    assert exit_.value.code == 0 and calls == [1]
