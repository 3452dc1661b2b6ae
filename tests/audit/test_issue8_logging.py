"""Issue 8 audit, item 5: logging levels of the CLI, and a library that never prints.

``-v`` adds INFO of occystrap's own loggers, ``-vv`` their DEBUG, ``--debug`` a traceback on
errors; without them, no INFO/DEBUG line and no traceback. The library itself (``process``,
``info``'s ``describe``, ``check``) writes nothing to stdout or stderr. The INFO line used is
the layer cache's "exceeds the cache size" notice, which a tiny ``--cache-max-size`` forces.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab import images
from lab.ocilayout import LayoutInfo
from lab.tarspec import directory, file
from lab.tools import OccystrapRunner
from occystrap.api import open_source, process
from occystrap.check import run_check
from occystrap.info import describe
from occystrap.transports.base import RunContext

LEVEL = re.compile(r"^(DEBUG|INFO|WARNING|ERROR) ([\w.]+): ", re.MULTILINE)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> LayoutInfo:
    root = tmp_path_factory.mktemp("audit8-logging")
    return images.build_oci_layout(
        root / "layout", [[directory("etc"), file("etc/x", "x" * 4000)], [file("y", "y")]]
    )


def levels(stderr: bytes) -> set[tuple[str, str]]:
    return {(m[0], m[1].split(".")[0]) for m in LEVEL.findall(stderr.decode())}


def test_verbosity_levels(
    layout: LayoutInfo, run_occystrap: OccystrapRunner, tmp_path: Path
) -> None:
    def run(*flags: str) -> bytes:
        cache = tmp_path / f"cache{len(flags)}{flags[0] if flags else ''}"
        done = run_occystrap(
            *flags, "--cache-dir", cache, "--cache-max-size", "10",
            "process", f"ocidir://{layout.path}", f"tar://{cache}.tar", "-f", "normalize-timestamps",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout == b""
        return done.stderr

    default, v, vv = run(), run("-v"), run("-vv")
    assert levels(default) <= {("WARNING", "occystrap")}, default.decode()
    assert ("INFO", "occystrap") in levels(v), v.decode()
    assert b"exceeds the cache size" in v
    assert not any(level == "DEBUG" for level, _ in levels(v)), v.decode()
    assert ("DEBUG", "occystrap") in levels(vv), vv.decode()
    # -vv is occystrap's own DEBUG only; other libraries stay at WARNING
    assert {name for level, name in levels(vv) if level in ("DEBUG", "INFO")} == {"occystrap"}


def test_errors_are_one_line_unless_debug(run_occystrap: OccystrapRunner, tmp_path: Path) -> None:
    missing = f"ocidir://{tmp_path / 'nothing'}"
    for flags in ((), ("-v",), ("-vv",)):
        done = run_occystrap(*flags, "info", missing)
        assert done.returncode == 1
        assert done.stderr.decode().count("\n") == 1, done.stderr.decode()
        assert done.stderr.startswith(b"occystrap: error: no OCI image layout at ")
    debug = run_occystrap("--debug", "info", missing)
    assert debug.returncode == 1
    text = debug.stderr.decode()
    assert "Traceback (most recent call last)" in text and "ImageNotFound" in text
    assert text.splitlines()[-1].startswith("occystrap: error: no OCI image layout at ")
    usage = run_occystrap("info")  # a usage error: exit 2, one line
    assert usage.returncode == 2 and usage.stderr.decode().count("\n") == 1


def test_the_library_never_prints(
    layout: LayoutInfo, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    src = f"ocidir://{layout.path}"
    process(src, f"tar://{tmp_path / 'a.tar'}", ["normalize-timestamps"], RunContext())
    process(src, f"oci://{tmp_path / 'bundle'}", [], RunContext(temp_dir=str(tmp_path)))
    with open_source(src, RunContext()) as image:
        described = describe(image)
    json.dumps(described)
    report = run_check(src, RunContext(), full=True)
    assert report.errors == 0
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
