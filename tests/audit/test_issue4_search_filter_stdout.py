"""Issue 4, point 3 with issue 2, point 3: ``-f search`` while the image goes to stdout.

The search filter reports its hits at the end. When the destination is ``tar://-`` the
tarball owns standard output, so the hits must go to stderr: the bytes on stdout are exactly
the tarball a file destination gets, and every hit is still reported. With a file
destination the hits stay on stdout (and the exit status is 0 either way: the image was
written).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.tools import run_occystrap
from occystrap.sample import build


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    work = tmp_path_factory.mktemp("search-stdout")
    path = work / "sample.tar"
    build(str(path))
    out = work / "out.tar"
    done = run_occystrap("--quiet", "process", f"tar://{path}", f"tar://{out}")
    assert done.returncode == 0, done.stderr.decode()
    return path, out.read_bytes()


@pytest.mark.parametrize("dest", ["tar://-", "docker-archive://-", "file://-"])
@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "verbose"])
def test_hits_do_not_corrupt_a_tarball_on_stdout(
    sample: tuple[Path, bytes], dest: str, quiet: bool
) -> None:
    path, expected = sample
    flags = ["--quiet"] if quiet else []
    done = run_occystrap(
        *flags, "process", f"tar://{path}", dest, "-f", "search:pattern=*.conf,json=true"
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == expected, "search hits were mixed into the tarball on stdout"
    hits = [json.loads(line) for line in done.stderr.decode().splitlines() if line.startswith("{")]
    assert sorted((h["path"], h["status"]) for h in hits) == [
        ("etc/conf.d/new.conf", "visible"),
        ("etc/conf.d/old.conf", "deleted"),
    ]


def test_hits_go_to_stdout_with_a_file_destination(
    sample: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, expected = sample
    out = tmp_path / "o.tar"
    done = run_occystrap(
        "--quiet",
        "process",
        f"tar://{path}",
        f"tar://{out}",
        "-f",
        "search:pattern=*.conf,json=true",
    )
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_bytes() == expected
    hits = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert {h["path"] for h in hits} == {"etc/conf.d/new.conf", "etc/conf.d/old.conf"}
    nothing = run_occystrap(
        "--quiet", "process", f"tar://{path}", f"tar://{out}", "-f", "search:pattern=zzz"
    )
    assert nothing.returncode == 0 and nothing.stdout == b""
