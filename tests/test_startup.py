"""What a run does before its first request: the modules it imports, the TLS set-up.

Start-up is most of a short job's time (docs/performance.md). A copy loads the modules of
the routes it takes, not the others; a run that talks TLS loads the system's CA
certificates in a thread of its own, while it imports, and one that does not never loads
them. These tests run the real command line in a fresh interpreter against the lab's
registries and record, when the command exits, the modules loaded and the threads that
made system TLS contexts. The counterpart tests show that the probe sees a route's modules
when a run does take it.
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
    import atexit, json, ssl, sys, threading
    out = sys.argv.pop(1)
    made = []
    real = ssl.create_default_context
    def counted(*args, **kwargs):
        made.append(threading.current_thread().name)
        return real(*args, **kwargs)
    ssl.create_default_context = counted
    def record():
        with open(out, "w") as f:
            json.dump({"modules": sorted(sys.modules), "contexts": made}, f)
    atexit.register(record)
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
#: Modules no copy of one image without filters needs, between a registry and a layout or
#: a registry: other transports' options, schema 1's conversion.
ELSEWHERE = {
    "occystrap.copy_index",
    "occystrap.filters.catalog",
    "occystrap.transports.registry.schema1",
    "occystrap.transports.registry.schema1_layers",
    "occystrap.transports.dockerarchive.options",
    "occystrap.transports.directory.options",
    "occystrap.transports.bundle.options",
    "occystrap.transports.daemon.options",
}


def probe(tmp_path: Path, *args: str) -> dict[str, list[str]]:
    """``occystrap ARGS`` (which must succeed): ``modules`` loaded at its exit, and the
    names of the threads that made system TLS ``contexts``."""
    out = tmp_path / f"probe-{len(list(tmp_path.glob('probe-*')))}.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    found: dict[str, list[str]] = json.loads(out.read_text())
    return found


def loaded(tmp_path: Path, *args: str) -> set[str]:
    """The modules loaded by ``occystrap ARGS`` (which must succeed), at its exit."""
    return set(probe(tmp_path, *args)["modules"])


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
    assert {"occystrap.transports.registry.options", "occystrap.transports.ocilayout.options"} <= (
        modules
    )  # and the options of the transports the run uses
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
    assert "occystrap.transports.dockerarchive.options" in modules  # its sink's options
    # the tar sink writes tar (occystrap.tario), but no layer goes through filters
    assert "occystrap.copy_filtered" not in modules


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushed_tls(registry_tls: Registry, busybox_layout: LayoutInfo) -> str:
    """busybox in the TLS registry as ``startup/busybox:v1``; returns the reference."""
    assert registry_tls.ca_file is not None
    ref = f"{registry_tls.host}/startup/busybox:v1"
    done = run_occystrap(
        "--ca-file",
        str(registry_tls.ca_file),
        "process",
        f"ocidir://{busybox_layout.path}:latest",
        f"registry://{ref}",
    )
    assert done.returncode == 0, done.stderr.decode()
    return ref


def test_a_pull_over_tls_loads_the_ca_certificates_ahead(
    tmp_path: Path, pushed_tls: str, registry_tls: Registry
) -> None:
    found = probe(tmp_path, "-q", "--ca-file", str(registry_tls.ca_file), "process",
                  f"registry://{pushed_tls}", f"ocidir://{tmp_path}/layout:v1")  # fmt: skip
    assert (tmp_path / "layout" / "index.json").is_file()
    assert found["contexts"] == ["tls-ahead"]


def test_a_copy_within_a_tls_registry_loads_them_ahead_for_each_client(
    tmp_path: Path, pushed_tls: str, registry_tls: Registry
) -> None:
    dest = f"registry://{registry_tls.host}/startup/copied:v1"
    found = probe(tmp_path, "-q", "--ca-file", str(registry_tls.ca_file), "process",
                  f"registry://{pushed_tls}", dest)  # fmt: skip
    assert found["contexts"] == ["tls-ahead", "tls-ahead"]  # the source's and the sink's


def test_plain_http_loads_no_ca_certificates(tmp_path: Path, pushed: str) -> None:
    found = probe(tmp_path, "-q", "--insecure", "process", f"registry://{pushed}",
                  f"ocidir://{tmp_path}/layout:v1")  # fmt: skip
    assert (tmp_path / "layout" / "index.json").is_file()
    assert found["contexts"] == []
