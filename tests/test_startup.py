"""What a run imports: a copy loads the modules of the routes it takes, not the others.

Start-up is most of a short job's time (docs/performance.md): every module a run imports
without using costs it. These tests run the real command line in a fresh interpreter,
against the lab's registry, and list the modules loaded when the command exits. The
counterpart tests show that the probe sees a route's modules when a run does take it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.ocilayout import LayoutInfo
from lab.registry import Registry
from lab.tools import run_occystrap

PROBE = textwrap.dedent(
    """
    import atexit, json, sys
    out = sys.argv.pop(1)
    atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
    sys.argv[0] = "occystrap"
    from occystrap.cli.main import main
    main()
    """
)

#: Modules of the routes through filters (occystrap.copy_filtered).
FILTERED = {
    "occystrap.copy_filtered",
    "occystrap.filters.base",
    "occystrap.tario.reader",
    "occystrap.tario.writer",
}
#: Modules of the routes that change a layer's form, and of the layer cache.
CONVERTING = {
    "occystrap.copy_convert",
    "occystrap.copy_cache",
    "occystrap.cache.recording",
    "occystrap.blobio.compress",
    "occystrap.tario.check",
}
#: Modules no copy of one image without filters needs.
ELSEWHERE = {
    "occystrap.copy_index",
    "occystrap.filters.catalog",
    "occystrap.transports.registry.schema1_layers",
}


def loaded(tmp_path: Path, *args: str) -> set[str]:
    """The modules loaded by ``occystrap ARGS`` (which must succeed), at its exit."""
    out = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    modules: list[str] = json.loads(out.read_text())
    return set(modules)


@pytest.fixture(scope="module")
def pushed(registry_plain: Registry, busybox_layout: LayoutInfo) -> str:
    """busybox in the plain registry as ``startup/busybox:v1``; returns the reference."""
    ref = f"{registry_plain.host}/startup/busybox:v1"
    done = run_occystrap(
        "--insecure", "process", f"ocidir://{busybox_layout.path}:latest", f"registry://{ref}"
    )
    assert done.returncode == 0, done.stderr.decode()
    return ref


def test_a_pull_into_a_layout_loads_only_the_pass_route(tmp_path: Path, pushed: str) -> None:
    modules = loaded(tmp_path, "-q", "--insecure", "process", f"registry://{pushed}",
                     f"ocidir://{tmp_path}/layout:v1")  # fmt: skip
    assert (tmp_path / "layout" / "index.json").is_file()
    assert "occystrap.copy_layer" in modules  # the probe sees the engine
    assert not (extra := modules & (FILTERED | CONVERTING | ELSEWHERE)), extra


def test_a_copy_within_a_registry_loads_only_the_pass_route(
    tmp_path: Path, pushed: str, registry_plain: Registry
) -> None:
    dest = f"registry://{registry_plain.host}/startup/copied:v1"
    modules = loaded(tmp_path, "-q", "--insecure", "process", f"registry://{pushed}", dest)
    assert "occystrap.transports.registry.sink" in modules
    assert not (extra := modules & (FILTERED | CONVERTING | ELSEWHERE)), extra


def test_a_filter_loads_the_filtered_route(tmp_path: Path, pushed: str) -> None:
    modules = loaded(tmp_path, "-q", "--insecure", "process", f"registry://{pushed}",
                     f"ocidir://{tmp_path}/layout:v1", "-f", "normalize-timestamps")  # fmt: skip
    assert not (missing := (FILTERED | {"occystrap.filters.catalog"}) - modules), missing


def test_a_pull_into_a_tarball_loads_the_converting_route(tmp_path: Path, pushed: str) -> None:
    modules = loaded(tmp_path, "-q", "--insecure", "process", f"registry://{pushed}",
                     f"tar://{tmp_path}/out.tar")  # fmt: skip
    assert (tmp_path / "out.tar").is_file()
    assert not (missing := CONVERTING - modules), missing
    # the tar sink writes tar (occystrap.tario), but no layer goes through filters
    assert "occystrap.copy_filtered" not in modules
